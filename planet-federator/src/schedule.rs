//! Job schedules in the original's syntax (robfig/cron v3 with a seconds
//! field): exactly six fields `second minute hour day-of-month month
//! day-of-week`, the descriptors `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <go duration>`,
//! and an optional `CRON_TZ=<zone>` (or `TZ=<zone>`) prefix. Without a
//! prefix, times are in the process's local time zone, as in the original.

use std::{fmt, time::Duration};

use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use jiff::{Timestamp, tz::TimeZone};
use thiserror::Error;

use planet_cli::go_duration;

#[derive(Debug, Error)]
pub enum ScheduleError {
    #[error(
        "cron expression {expr:?} has {fields} fields; expected exactly 6: \
         second minute hour day-of-month month day-of-week \
         (e.g. \"*/30 * * * * *\"; a year field is not supported)"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("cron expression {expr:?} is invalid")]
    Invalid {
        expr: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error(
        "unknown cron descriptor {descriptor:?} (use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>)"
    )]
    Descriptor { descriptor: String },
    #[error("invalid @every interval in {expr:?}")]
    Every {
        expr: String,
        #[source]
        source: go_duration::DurationError,
    },
    #[error("unknown time zone {zone:?} in cron expression")]
    TimeZone {
        zone: String,
        #[source]
        source: jiff::Error,
    },
    #[error("cron expression {expr:?} has no time after {after}")]
    NoNextTime {
        expr: String,
        after: Timestamp,
        #[source]
        source: croner::errors::CronError,
    },
}

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron {
        cron: Box<Cron>,
        tz: TimeZone,
    },
    /// `@every`: whole seconds, at least one.
    Every(Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expr).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Schedule {
    /// Parses an expression; times without a zone prefix use the system zone.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        Self::parse_in(expr, TimeZone::system())
    }

    /// Parses an expression whose default zone is `default_tz`.
    pub fn parse_in(expr: &str, default_tz: TimeZone) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        let (tz, spec) = match split_zone(trimmed) {
            Some((zone, rest)) => {
                let tz = TimeZone::get(zone).map_err(|source| ScheduleError::TimeZone {
                    zone: zone.to_owned(),
                    source,
                })?;
                (tz, rest.trim())
            }
            None => (default_tz, trimmed),
        };
        let kind =
            if let Some(descriptor) = spec.strip_prefix('@') {
                parse_descriptor(expr, descriptor, tz)?
            } else {
                let fields = spec.split_whitespace().count();
                if fields != 6 {
                    return Err(ScheduleError::FieldCount {
                        expr: expr.to_owned(),
                        fields,
                    });
                }
                Kind::Cron {
                    cron: Box::new(parser().parse(spec).map_err(|source| {
                        ScheduleError::Invalid {
                            expr: expr.to_owned(),
                            source,
                        }
                    })?),
                    tz,
                }
            };
        Ok(Self {
            expr: expr.to_owned(),
            kind,
        })
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Result<Timestamp, ScheduleError> {
        match &self.kind {
            Kind::Cron { cron, tz } => {
                let zoned = after.to_zoned(tz.clone());
                cron.find_next_occurrence(&zoned, false)
                    .map(|z| z.timestamp())
                    .map_err(|source| ScheduleError::NoNextTime {
                        expr: self.expr.clone(),
                        after,
                        source,
                    })
            }
            Kind::Every(every) => {
                // robfig: the next whole second plus the interval, counted
                // from the truncated current second.
                let truncated = Timestamp::from_second(after.as_second()).unwrap_or(after);
                Ok(truncated.checked_add(*every).unwrap_or(Timestamp::MAX))
            }
        }
    }

    /// How many scheduled times fall in `(from, to]` (capped at `cap`).
    pub fn count_between(&self, from: Timestamp, to: Timestamp, cap: usize) -> usize {
        let mut n = 0;
        let mut t = from;
        while n < cap {
            match self.next_after(t) {
                Ok(next) if next <= to => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        // robfig accepts `5/10` (from 5, every 10) as well as `5-59/10`.
        .sloppy_ranges(true)
        .build()
}

fn split_zone(expr: &str) -> Option<(&str, &str)> {
    let rest = expr
        .strip_prefix("CRON_TZ=")
        .or_else(|| expr.strip_prefix("TZ="))?;
    Some(rest.split_once(char::is_whitespace).unwrap_or((rest, "")))
}

fn parse_descriptor(expr: &str, descriptor: &str, tz: TimeZone) -> Result<Kind, ScheduleError> {
    let six = match descriptor.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 0 1 1 *",
        "monthly" => "0 0 0 1 * *",
        "weekly" => "0 0 0 * * 0",
        "daily" | "midnight" => "0 0 0 * * *",
        "hourly" => "0 0 * * * *",
        other => {
            let Some(interval) = other.strip_prefix("every ") else {
                return Err(ScheduleError::Descriptor {
                    descriptor: format!("@{descriptor}"),
                });
            };
            let every =
                go_duration::parse(interval.trim()).map_err(|source| ScheduleError::Every {
                    expr: expr.to_owned(),
                    source,
                })?;
            // robfig rounds down to whole seconds, with a one-second minimum.
            let every = Duration::from_secs(every.as_secs().max(1));
            return Ok(Kind::Every(every));
        }
    };
    let cron = parser()
        .parse(six)
        .map_err(|source| ScheduleError::Invalid {
            expr: expr.to_owned(),
            source,
        })?;
    Ok(Kind::Cron {
        cron: Box::new(cron),
        tz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(expr: &str) -> Schedule {
        Schedule::parse_in(expr, TimeZone::UTC).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    #[test]
    fn default_schedule_every_thirty_seconds() {
        let s = utc("*/30 * * * * *");
        assert_eq!(
            s.next_after(ts("2026-11-25T10:00:00Z")).unwrap(),
            ts("2026-11-25T10:00:30Z")
        );
        assert_eq!(
            s.next_after(ts("2026-11-25T10:00:29.9Z")).unwrap(),
            ts("2026-11-25T10:00:30Z")
        );
        assert_eq!(
            s.next_after(ts("2026-11-25T10:00:30Z")).unwrap(),
            ts("2026-11-25T10:01:00Z")
        );
    }

    #[test]
    fn bigquery_schedules() {
        let hourly = utc("30 0 * * * *");
        assert_eq!(
            hourly.next_after(ts("2026-11-25T10:00:31Z")).unwrap(),
            ts("2026-11-25T11:00:30Z")
        );
        let daily = utc("30 0 11 * * *");
        assert_eq!(
            daily.next_after(ts("2026-11-25T11:00:31Z")).unwrap(),
            ts("2026-11-26T11:00:30Z")
        );
    }

    #[test]
    fn day_of_week_is_zero_based_sunday() {
        // 2026-11-29 is a Sunday, 2026-11-30 a Monday.
        let monday = utc("0 0 0 * * 1");
        assert_eq!(
            monday.next_after(ts("2026-11-25T00:00:00Z")).unwrap(),
            ts("2026-11-30T00:00:00Z")
        );
        let sunday = utc("0 0 0 * * SUN");
        assert_eq!(
            sunday.next_after(ts("2026-11-25T00:00:00Z")).unwrap(),
            ts("2026-11-29T00:00:00Z")
        );
    }

    #[test]
    fn sloppy_step_like_robfig() {
        let s = utc("5/20 * * * * *");
        assert_eq!(
            s.next_after(ts("2026-11-25T10:00:06Z")).unwrap(),
            ts("2026-11-25T10:00:25Z")
        );
    }

    #[test]
    fn descriptors_and_every() {
        assert_eq!(
            utc("@hourly")
                .next_after(ts("2026-11-25T10:20:00Z"))
                .unwrap(),
            ts("2026-11-25T11:00:00Z")
        );
        assert_eq!(
            utc("@daily")
                .next_after(ts("2026-11-25T10:20:00Z"))
                .unwrap(),
            ts("2026-11-26T00:00:00Z")
        );
        assert_eq!(
            utc("@every 1m30s")
                .next_after(ts("2026-11-25T10:20:00.5Z"))
                .unwrap(),
            ts("2026-11-25T10:21:30Z")
        );
        assert_eq!(
            utc("@every 100ms")
                .next_after(ts("2026-11-25T10:20:00Z"))
                .unwrap(),
            ts("2026-11-25T10:20:01Z")
        );
    }

    #[test]
    fn zone_prefix() {
        let s = utc("CRON_TZ=Asia/Tokyo 0 0 9 * * *");
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-11-25T10:00:00Z")).unwrap(),
            ts("2026-11-26T00:00:00Z")
        );
        assert!(matches!(
            Schedule::parse_in("TZ=Nowhere/Atlantis * * * * * *", TimeZone::UTC),
            Err(ScheduleError::TimeZone { .. })
        ));
    }

    #[test]
    fn wrong_field_counts_are_explained() {
        for expr in ["* * * * *", "0 */30 * * * * 2026", ""] {
            let err = Schedule::parse_in(expr, TimeZone::UTC).unwrap_err();
            assert!(matches!(err, ScheduleError::FieldCount { .. }), "{expr}");
            assert!(err.to_string().contains("expected exactly 6"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_rejected() {
        for expr in ["61 * * * * *", "* * 25 * * *", "a b c d e f", "@sometimes"] {
            assert!(Schedule::parse_in(expr, TimeZone::UTC).is_err(), "{expr}");
        }
    }

    #[test]
    fn counts_missed_ticks() {
        let s = utc("*/10 * * * * *");
        assert_eq!(
            s.count_between(ts("2026-11-25T10:00:00Z"), ts("2026-11-25T10:00:35Z"), 100),
            3
        );
        assert_eq!(
            s.count_between(ts("2026-11-25T10:00:00Z"), ts("2026-11-25T10:00:05Z"), 100),
            0
        );
    }
}
