//! Query results to InfluxDB points: pure functions, the original's
//! measurements, tags and fields (spec §6.5).
//!
//! | measurement | tags | field |
//! |---|---|---|
//! | `ingress` / `egress` / `unknown` (from `direction`) | `service`, `address`, `remote_service`, `remote_address` | `bandwidth_bps` (float) |
//! | `upstream` | `service`, `address`, `upstream_service`, `upstream_address`, `upstream_port`, `process_name`, `protocol` | `service_dependency` = `1i` |
//! | `downstream` | `service`, `address`, `port`, `process_name`, `downstream_service`, `downstream_address`, `protocol` | `service_dependency` = `1i` |
//!
//! Empty tag values are left out by the encoder.

use crate::{
    influx::{FieldValue, Point},
    prom::Sample,
};

/// Which dependency family a result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Upstream,
    Downstream,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// The point of one traffic series; `None` without `local_hostgroup`
/// (skipped, as in the original).
pub(crate) fn traffic_point(s: &Sample, at_ns: i64) -> Option<Point> {
    if s.label("local_hostgroup").is_empty() {
        return None;
    }
    let measurement = match s.label("direction") {
        d @ ("ingress" | "egress") => d,
        _ => "unknown",
    };
    Some(
        Point::new(measurement)
            .tag("service", s.label("local_hostgroup"))
            .tag("address", s.label("local_domain"))
            .tag("remote_service", s.label("remote_hostgroup"))
            .tag("remote_address", s.label("remote_domain"))
            .field("bandwidth_bps", FieldValue::Float(s.value))
            .timestamp_ns(at_ns),
    )
}

/// The point of one upstream or downstream series.
pub(crate) fn dependency_point(direction: Direction, s: &Sample, at_ns: i64) -> Point {
    let p = Point::new(direction.as_str())
        .tag("service", s.label("local_hostgroup"))
        .tag("address", s.label("local_address"))
        .tag("process_name", s.label("process_name"))
        .tag("protocol", s.label("protocol"));
    let p = match direction {
        Direction::Upstream => p
            .tag("upstream_service", s.label("remote_hostgroup"))
            .tag("upstream_address", s.label("remote_address"))
            .tag("upstream_port", s.label("port")),
        Direction::Downstream => p
            .tag("port", s.label("port"))
            .tag("downstream_service", s.label("remote_hostgroup"))
            .tag("downstream_address", s.label("remote_address")),
    };
    p.field("service_dependency", FieldValue::Integer(1))
        .timestamp_ns(at_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::line::encode;

    fn lines(points: &[Point]) -> Vec<String> {
        points
            .iter()
            .map(|p| {
                let mut s = String::new();
                encode(p, &mut s).unwrap();
                s
            })
            .collect()
    }

    const T: i64 = 1_764_064_830_000_000_000;

    #[test]
    fn traffic_rows() {
        let samples = [
            Sample::new(
                [
                    ("direction", "ingress"),
                    ("local_hostgroup", "web"),
                    ("local_domain", "web-1.example"),
                    ("remote_hostgroup", "db"),
                    ("remote_domain", "db-1.example"),
                ],
                1_000_000.0,
            ),
            Sample::new(
                [
                    ("direction", "egress"),
                    ("local_hostgroup", "web"),
                    ("remote_hostgroup", "db"),
                ],
                2500.5,
            ),
            Sample::new(
                [
                    ("direction", "sideways"),
                    ("local_hostgroup", "web"),
                    ("remote_hostgroup", "db"),
                ],
                1500.0,
            ),
            Sample::new(
                [("direction", "ingress"), ("remote_hostgroup", "db")],
                9999.0,
            ),
        ];
        let points: Vec<Point> = samples.iter().filter_map(|s| traffic_point(s, T)).collect();
        assert_eq!(
            points.len(),
            samples.len() - 1,
            "the one without local_hostgroup is skipped"
        );
        assert_eq!(
            lines(&points),
            vec![
                "ingress,address=web-1.example,remote_address=db-1.example,remote_service=db,service=web bandwidth_bps=1000000 1764064830000000000\n",
                "egress,remote_service=db,service=web bandwidth_bps=2500.5 1764064830000000000\n",
                "unknown,remote_service=db,service=web bandwidth_bps=1500 1764064830000000000\n",
            ]
        );
    }

    fn dep_sample() -> Sample {
        Sample::new(
            [
                ("local_hostgroup", "web"),
                ("local_address", "web-1.example"),
                ("remote_hostgroup", "db"),
                ("remote_address", "db-1.example"),
                ("port", "5432"),
                ("protocol", "tcp"),
                ("process_name", "nginx"),
            ],
            1.0,
        )
    }

    #[test]
    fn upstream_rows() {
        let points = [dependency_point(Direction::Upstream, &dep_sample(), T)];
        assert_eq!(
            lines(&points),
            vec![
                "upstream,address=web-1.example,process_name=nginx,protocol=tcp,service=web,upstream_address=db-1.example,upstream_port=5432,upstream_service=db service_dependency=1i 1764064830000000000\n"
            ]
        );
    }

    #[test]
    fn downstream_rows() {
        let points = [dependency_point(Direction::Downstream, &dep_sample(), T)];
        assert_eq!(
            lines(&points),
            vec![
                "downstream,address=web-1.example,downstream_address=db-1.example,downstream_service=db,port=5432,process_name=nginx,protocol=tcp,service=web service_dependency=1i 1764064830000000000\n"
            ]
        );
    }
}
