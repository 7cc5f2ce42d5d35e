//! `planet-federator edges`: the stored dependency history as a table or
//! JSON.

use jiff::{SignedDuration, Timestamp};
use planet_cli::go_duration;
use thiserror::Error;

use crate::{
    cli::EdgesArgs,
    history::{self, render_table, report},
    influx::{InfluxClient, query::QueryError},
};

#[derive(Debug, Error)]
pub enum EdgesError {
    #[error("invalid --{flag} {value:?}: use a duration (24h, 7d, 2w) or an RFC 3339 time")]
    When { flag: &'static str, value: String },
    #[error("--since {since} is after --until {until}")]
    Window { since: Timestamp, until: Timestamp },
    #[error("cannot read the dependency history")]
    Query(#[source] QueryError),
}

/// A duration with Go units plus `d` (days) and `w` (weeks).
fn parse_span(s: &str) -> Option<SignedDuration> {
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let days: Option<i64> = match unit {
        "d" => n.parse().ok(),
        "w" => n.parse::<i64>().ok().map(|w| w * 7),
        _ => None,
    };
    match days {
        Some(d) => Some(SignedDuration::from_hours(d.checked_mul(24)?)),
        None => go_duration::parse_signed(s).ok(),
    }
}

/// Resolves `--since`/`--until` (also `map`'s) into the window.
pub(crate) fn window(
    since: &str,
    until: &str,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), EdgesError> {
    let until = if until == "now" {
        now
    } else {
        until.parse().map_err(|_| EdgesError::When {
            flag: "until",
            value: until.to_owned(),
        })?
    };
    let since = match parse_span(since) {
        Some(span) => until.checked_sub(span.abs()).unwrap_or(Timestamp::MIN),
        None => since.parse().map_err(|_| EdgesError::When {
            flag: "since",
            value: since.to_owned(),
        })?,
    };
    if since > until {
        return Err(EdgesError::Window { since, until });
    }
    Ok((since, until))
}

/// Reads the history and renders the report.
pub(crate) async fn run(
    influx: &InfluxClient,
    args: &EdgesArgs,
    now: Timestamp,
) -> Result<String, EdgesError> {
    let (since, until) = window(&args.since, &args.until, now)?;
    let edges = history::load(influx, args.service.as_deref())
        .await
        .map_err(EdgesError::Query)?;
    let r = report(&edges, since, until, args.stale_after);
    Ok(if args.format == "json" {
        serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"
    } else {
        render_table(&r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let (s, u) = window("7d", "now", now).unwrap();
        assert_eq!(u, now);
        assert_eq!(s, "2026-11-18T12:00:00Z".parse::<Timestamp>().unwrap());
        let (s, _) = window("90m", "now", now).unwrap();
        assert_eq!(s, "2026-11-25T10:30:00Z".parse::<Timestamp>().unwrap());
        let (s, u) = window("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", now).unwrap();
        assert_eq!(s, "2026-11-01T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(u, "2026-11-02T00:00:00Z".parse::<Timestamp>().unwrap());
        assert!(window("yesterday", "now", now).is_err());
        assert!(window("2026-12-01T00:00:00Z", "now", now).is_err());
    }
}
