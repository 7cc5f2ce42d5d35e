//! The three jobs' PromQL, as in the original, with its hard-coded
//! exclusion lists turned into configuration ([`Exclusions`]).
//!
//! With the `planet-exporter` preset and the default windows, the queries
//! are character for character the original's (whitespace aside); see the
//! tests.

use std::{fmt, str::FromStr, time::Duration};

use thiserror::Error;

/// The traffic family: bytes per peer, a counter in planet-agent (a
/// gauge of cumulative bytes in planet-exporter; `irate` works on both).
pub(crate) const TRAFFIC_METRIC: &str = "planet_traffic_bytes_total";
pub(crate) const UPSTREAM_METRIC: &str = "planet_upstream";
pub(crate) const DOWNSTREAM_METRIC: &str = "planet_downstream";

/// Labels the traffic job keeps (it sums over `remote_ip` and `instance`).
pub(crate) const TRAFFIC_BY: &str =
    "direction, local_hostgroup, local_domain, remote_hostgroup, remote_domain";
/// Labels the dependency jobs keep.
pub(crate) const DEPENDENCY_BY: &str = "local_hostgroup, local_address, remote_address, remote_hostgroup, port, process_name, protocol";
/// Traffic rows at or below this many bits per second are not written.
pub(crate) const MIN_BANDWIDTH_BPS: u32 = 1000;

/// The original's remote-address exclusions (its `EXCL_ADDR`): the
/// author's GCP/Consul estate. Prometheus regexes are fully anchored and
/// these dots are unescaped, so `52.*` is "starts with 52" and `f.*`
/// drops every domain starting with "f".
pub(crate) const PLANET_EXPORTER_ADDRESSES: &[&str] = &[
    "100.([6-9]|1[0-2]).*",
    "52.*",
    "192.168.*",
    ".*prometheus.*",
    "203.*",
    "163.18.*",
    "130.211.*",
    "f.*",
    "169.254.*",
    "111.*",
];

/// The original's port exclusions (its `EXCL_PORT`): ssh, dns, rpcbind,
/// consul, node_exporter, darkstat, planet-exporter, nrpe, smtp, ...
pub(crate) const PLANET_EXPORTER_PORTS: &[&str] = &[
    "22", "53", "111", "8301", "8300", "8500", "3025", "3022", "51666", "9100", "19100", "5666",
    "25", "8600", "11910", "11560",
];

/// Which built-in exclusion lists to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// The original's lists, unchanged (the default: same data as before).
    #[default]
    PlanetExporter,
    /// No built-in exclusions; only `--exclude-address`/`--exclude-port`.
    None,
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "planet-exporter" | "original" => Ok(Self::PlanetExporter),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown exclusion preset {other:?} (use planet-exporter or none)"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PlanetExporter => "planet-exporter",
            Self::None => "none",
        })
    }
}

#[derive(Debug, Error)]
pub enum ExclusionError {
    #[error("invalid exclusion regex {pattern:?}")]
    Regex {
        pattern: String,
        #[source]
        source: Box<regex_syntax::Error>,
    },
}

/// Remote addresses and ports the jobs leave out: alternatives of one
/// anchored Prometheus regex each. An empty list means no matcher at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusions {
    pub addresses: Vec<String>,
    pub ports: Vec<String>,
}

impl Exclusions {
    /// The preset's lists followed by `extra_*` (each a regex).
    pub fn new(
        preset: Preset,
        extra_addresses: &[String],
        extra_ports: &[String],
    ) -> Result<Self, ExclusionError> {
        let (addresses, ports): (&[&str], &[&str]) = match preset {
            Preset::PlanetExporter => (PLANET_EXPORTER_ADDRESSES, PLANET_EXPORTER_PORTS),
            Preset::None => (&[], &[]),
        };
        let join = |base: &[&str], extra: &[String]| -> Result<Vec<String>, ExclusionError> {
            base.iter()
                .map(|s| (*s).to_owned())
                .chain(extra.iter().cloned())
                .map(|p| validate(&p).map(|()| p))
                .collect()
        };
        Ok(Self {
            addresses: join(addresses, extra_addresses)?,
            ports: join(ports, extra_ports)?,
        })
    }

    fn address_regex(&self) -> Option<String> {
        alternatives(&self.addresses)
    }

    fn port_regex(&self) -> Option<String> {
        alternatives(&self.ports)
    }
}

fn validate(pattern: &str) -> Result<(), ExclusionError> {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map(drop)
        .map_err(|source| ExclusionError::Regex {
            pattern: pattern.to_owned(),
            source: Box::new(source),
        })
}

fn alternatives(list: &[String]) -> Option<String> {
    (!list.is_empty()).then(|| format!("({})", list.join("|")))
}

/// A PromQL double-quoted string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Windows of the range selectors. The originals (30 s for `irate`, 15 s
/// for `max_over_time`) need Prometheus to scrape agents every ~15 s or
/// faster; widen them for slower scrape intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub rate: Duration,
    pub dependency: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            rate: Duration::from_secs(30),
            dependency: Duration::from_secs(15),
        }
    }
}

/// A PromQL duration: `30s`, `1m30s`, `1h`, `1s500ms` (no fractions).
fn range(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    let parts = [
        (ms / 3_600_000, "h"),
        ((ms / 60_000) % 60, "m"),
        ((ms / 1000) % 60, "s"),
        (ms % 1000, "ms"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// The traffic job: bits per second per (direction, local hostgroup and
/// domain, remote hostgroup and domain), summed over agents and remote
/// IPs, above 1 kbit/s.
pub(crate) fn traffic(exclusions: &Exclusions, windows: Windows) -> String {
    let mut matchers = vec![r#"local_hostgroup!="""#.to_owned()];
    if let Some(addr) = exclusions.address_regex() {
        matchers.push(format!("remote_ip!~{}", quote(&addr)));
        matchers.push(format!("remote_domain!~{}", quote(&addr)));
    }
    matchers.push(r#"remote_hostgroup!="""#.to_owned());
    format!(
        "sum(sum(irate({TRAFFIC_METRIC}{{{}}}[{}])) by ({TRAFFIC_BY}, instance) * 8) by ({TRAFFIC_BY}) > {MIN_BANDWIDTH_BPS}",
        matchers.join(", "),
        range(windows.rate),
    )
}

/// The upstream or downstream job: every dependency seen in the window
/// whose remote address resolved to a name (not starting with a digit).
pub(crate) fn dependency(metric: &str, exclusions: &Exclusions, windows: Windows) -> String {
    let mut matchers = vec![r#"local_hostgroup!="""#.to_owned()];
    if let Some(port) = exclusions.port_regex() {
        matchers.push(format!("port!~{}", quote(&port)));
    }
    if let Some(addr) = exclusions.address_regex() {
        matchers.push(format!("remote_address!~{}", quote(&addr)));
    }
    matchers.push(r#"remote_address!="localhost""#.to_owned());
    matchers.push(r#"process_name!="""#.to_owned());
    matchers.push(format!("remote_address!~{}", quote(r"\d.*")));
    format!(
        "max(max_over_time({metric}{{{}}}[{}])) by ({DEPENDENCY_BY})",
        matchers.join(", "),
        range(windows.dependency),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalise(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    const EXCL_ADDR: &str = "(100.([6-9]|1[0-2]).*|52.*|192.168.*|.*prometheus.*|203.*|163.18.*|130.211.*|f.*|169.254.*|111.*)";
    const EXCL_PORT: &str =
        "(22|53|111|8301|8300|8500|3025|3022|51666|9100|19100|5666|25|8600|11910|11560)";

    fn original() -> Exclusions {
        Exclusions::new(Preset::PlanetExporter, &[], &[]).unwrap()
    }

    #[test]
    fn traffic_query_is_the_originals() {
        let expected = format!(
            r#"sum(
              sum(
                irate(planet_traffic_bytes_total{{local_hostgroup!="", remote_ip!~"{EXCL_ADDR}", remote_domain!~"{EXCL_ADDR}", remote_hostgroup!=""}}[30s])
              ) by (direction, local_hostgroup, local_domain, remote_hostgroup, remote_domain, instance) * 8
            ) by (direction, local_hostgroup, local_domain, remote_hostgroup, remote_domain) > 1000"#
        );
        let got = traffic(&original(), Windows::default());
        assert_eq!(
            normalise(&got).replace("( ", "(").replace(" )", ")"),
            normalise(&expected).replace("( ", "(").replace(" )", ")")
        );
    }

    #[test]
    fn dependency_queries_are_the_originals() {
        for metric in [UPSTREAM_METRIC, DOWNSTREAM_METRIC] {
            let expected = format!(
                r#"max(
                  max_over_time(
                    {metric}{{local_hostgroup!="", port!~"{EXCL_PORT}", remote_address!~"{EXCL_ADDR}", remote_address!="localhost", process_name!="", remote_address!~"\\d.*"}}[15s]
                  )
                ) by (local_hostgroup, local_address, remote_address, remote_hostgroup, port, process_name, protocol)"#
            );
            let got = dependency(metric, &original(), Windows::default());
            assert_eq!(
                normalise(&got).replace("( ", "(").replace(" )", ")"),
                normalise(&expected).replace("( ", "(").replace(" )", ")")
            );
        }
    }

    #[test]
    fn no_preset_means_no_exclusion_matchers() {
        let none = Exclusions::new(Preset::None, &[], &[]).unwrap();
        let t = traffic(&none, Windows::default());
        assert!(!t.contains("remote_ip"), "{t}");
        let d = dependency(UPSTREAM_METRIC, &none, Windows::default());
        assert!(!d.contains("port!~"), "{d}");
        assert!(d.contains(r#"remote_address!~"\\d.*""#), "{d}");
    }

    #[test]
    fn extra_exclusions_are_appended_and_quoted() {
        let ex = Exclusions::new(
            Preset::None,
            &[r"10\.0\..*".to_owned(), r#"a"b"#.to_owned()],
            &["9[0-9]{3}".to_owned()],
        )
        .unwrap();
        let d = dependency(DOWNSTREAM_METRIC, &ex, Windows::default());
        assert!(d.contains(r#"remote_address!~"(10\\.0\\..*|a\"b)""#), "{d}");
        assert!(d.contains(r#"port!~"(9[0-9]{3})""#), "{d}");
    }

    #[test]
    fn bad_regex_is_rejected() {
        let err = Exclusions::new(Preset::None, &["(".to_owned()], &[]).unwrap_err();
        assert!(err.to_string().contains("invalid exclusion regex"));
    }

    #[test]
    fn windows_render_as_promql_ranges() {
        let w = Windows {
            rate: Duration::from_secs(90),
            dependency: Duration::from_secs(3600),
        };
        assert!(traffic(&original(), w).contains("[1m30s]"));
        assert!(dependency(UPSTREAM_METRIC, &original(), w).contains("[1h]"));
        let w = Windows {
            rate: Duration::from_secs(120),
            dependency: Duration::from_millis(1500),
        };
        assert!(traffic(&original(), w).contains("[2m]"));
        assert!(dependency(UPSTREAM_METRIC, &original(), w).contains("[1s500ms]"));
    }
}
