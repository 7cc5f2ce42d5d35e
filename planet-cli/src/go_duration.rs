//! Go `time.ParseDuration` syntax, which the original's flags use
//! (`30s`, `-1h5m`, `1.5h`, `250ms`). Signed: the time offset may be negative.

use std::fmt;

use jiff::SignedDuration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Go duration, sign included (`-1h5m`, `+30s`, `0`).
pub fn parse_signed(input: &str) -> Result<SignedDuration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total_ns: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit (use ns, us, ms, s, m, h)"))?;
        if number_len == 0 {
            return Err(err("expected a number"));
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err("unknown unit (use ns, us, ms, s, m, h)")),
        };
        let part = (number * unit_ns).round();
        if !part.is_finite() || part > 9.2e18 {
            return Err(err("out of range"));
        }
        // Checked above: the part fits an i64, so the cast is exact.
        let part = part as i128;
        total_ns += part;
        rest = &rest[unit_len..];
    }
    let total_ns = if negative { -total_ns } else { total_ns };
    let total_ns = i64::try_from(total_ns).map_err(|_| err("out of range"))?;
    Ok(SignedDuration::from_nanos(total_ns))
}

/// Parses a Go duration that must not be negative.
pub fn parse(input: &str) -> Result<std::time::Duration, DurationError> {
    let d = parse_signed(input)?;
    std::time::Duration::try_from(d).map_err(|_| DurationError {
        input: input.to_owned(),
        reason: "negative durations are not allowed here",
    })
}

/// Formats a duration the way Go's `Duration.String` does for whole
/// milliseconds and up (`1h5m0s`, `-30s`, `250ms`, `0s`).
pub struct GoDuration(pub SignedDuration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.is_negative() {
            f.write_str("-")?;
        }
        let d = d.abs();
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        if secs == 0 {
            return if nanos % 1_000_000 == 0 {
                write!(f, "{}ms", nanos / 1_000_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        if nanos == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", SignedDuration::from_secs(30)),
            ("-1h5m", SignedDuration::from_secs(-3900)),
            ("1.5h", SignedDuration::from_secs(5400)),
            ("250ms", SignedDuration::from_millis(250)),
            ("10us", SignedDuration::from_micros(10)),
            ("2µs", SignedDuration::from_micros(2)),
            ("0", SignedDuration::ZERO),
            ("0s", SignedDuration::ZERO),
            ("-0s", SignedDuration::ZERO),
            ("+1s", SignedDuration::from_secs(1)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_signed(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in ["", "-", "7", "s", "1x", "1..2s", "abc", "--1s"] {
            assert!(parse_signed(input).is_err(), "{input}");
        }
        assert!(parse("-1s").is_err());
        assert_eq!(parse("2s"), Ok(std::time::Duration::from_secs(2)));
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (SignedDuration::ZERO, "0s"),
            (SignedDuration::from_secs(-3900), "-1h5m0s"),
            (SignedDuration::from_secs(30), "30s"),
            (SignedDuration::from_millis(1500), "1.5s"),
            (SignedDuration::from_millis(250), "250ms"),
        ];
        for (d, expected) in cases {
            assert_eq!(GoDuration(d).to_string(), expected);
        }
    }
}
