//! darkstat's per-host byte counters, from either of its two pages:
//!
//! - `/metrics` (darkstat ≥ 3.0.720): `host_bytes_total{ip, dir}`;
//! - `/hosts/?full=yes` (every darkstat, and the only one in 3.0.719,
//!   which distributions still ship): an HTML table with `IP`, `In` and
//!   `Out` columns, numbers with thousands separators.
//!
//! darkstat's `in` is what a host received and `out` what it sent. Seen
//! from this host, bytes a peer sent came *in* to us, so (spec §4.3):
//! `out` → `ingress`, `in` → `egress`.

use std::net::IpAddr;

use thiserror::Error;

use super::{
    Direction, PeerBytes,
    exposition::{Exposition, Sample},
};

/// The family darkstat ≥ 3.0.720 serves on `/metrics`.
pub const FAMILY: &str = "host_bytes_total";

/// Which darkstat page the numbers came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `/metrics` (darkstat ≥ 3.0.720).
    Metrics,
    /// `/hosts/?full=yes` (darkstat 3.0.719 and older).
    HostsHtml,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metrics => "metrics",
            Self::HostsHtml => "hosts_html",
        }
    }
}

/// What samples were left out of a `/metrics` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// `ip` missing or not an address.
    pub bad_ip: usize,
    /// `dir` missing or neither `in` nor `out`.
    pub bad_dir: usize,
    /// Negative, NaN or infinite values.
    pub bad_value: usize,
}

/// A darkstat page that does not hold the host table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DarkstatError {
    #[error("metric {FAMILY} not found")]
    NoFamily,
    #[error("no hosts table in the page")]
    NoTable,
    #[error("the hosts table has no {0:?} column")]
    NoColumn(&'static str),
    #[error("hosts table row {row}: {message}")]
    Row { row: usize, message: String },
    #[error("the hosts table lists {shown} of {total} hosts (paginated page)")]
    Partial { shown: u64, total: u64 },
}

/// `host_bytes_total` samples as peer counters. A missing family is an
/// error; unusable samples are skipped and counted.
pub fn from_metrics(exp: &Exposition) -> Result<(Vec<PeerBytes>, Skipped), DarkstatError> {
    if !exp.has(FAMILY) {
        return Err(DarkstatError::NoFamily);
    }
    let mut skipped = Skipped::default();
    let mut out = Vec::new();
    for sample in exp.samples(FAMILY) {
        match peer(sample) {
            Ok(p) => out.push(p),
            Err(Bad::Ip) => skipped.bad_ip += 1,
            Err(Bad::Dir) => skipped.bad_dir += 1,
            Err(Bad::Value) => skipped.bad_value += 1,
        }
    }
    Ok((out, skipped))
}

enum Bad {
    Ip,
    Dir,
    Value,
}

fn peer(sample: &Sample) -> Result<PeerBytes, Bad> {
    let remote: IpAddr = sample
        .label("ip")
        .and_then(|ip| ip.parse().ok())
        .ok_or(Bad::Ip)?;
    let direction = match sample.label("dir") {
        Some("in") => Direction::Egress,
        Some("out") => Direction::Ingress,
        _ => return Err(Bad::Dir),
    };
    if !(sample.value.is_finite() && sample.value >= 0.0) {
        return Err(Bad::Value);
    }
    Ok(PeerBytes {
        remote,
        direction,
        bytes: sample.value,
    })
}

/// The rows of darkstat's `/hosts/?full=yes` page.
pub fn from_hosts_html(page: &str) -> Result<Vec<PeerBytes>, DarkstatError> {
    let start = page.find("<table").ok_or(DarkstatError::NoTable)?;
    let end = page[start..]
        .find("</table>")
        .map_or(page.len(), |e| start + e);
    let mut rows = page[start..end].split("<tr").skip(1).map(cells);
    let header = rows.next().ok_or(DarkstatError::NoTable)?;
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(DarkstatError::NoColumn(name))
    };
    let (ip_col, in_col, out_col) = (column("IP")?, column("In")?, column("Out")?);
    let mut out = Vec::new();
    let mut listed = 0u64;
    for (index, row) in rows.enumerate() {
        let row_error = |message: String| DarkstatError::Row {
            row: index + 1,
            message,
        };
        let cell = |col: usize| {
            row.get(col)
                .map(String::as_str)
                .ok_or_else(|| row_error(format!("{} cells", row.len())))
        };
        let bytes = |col: usize| {
            let text = cell(col)?;
            let digits: String = text.chars().filter(|c| *c != ',').collect();
            digits
                .parse::<u64>()
                .map_err(|_| row_error(format!("{text:?} is not a byte count")))
        };
        let (ip, bytes_in, bytes_out) = (cell(ip_col)?, bytes(in_col)?, bytes(out_col)?);
        listed += 1;
        // As planet-exporter: a host whose address does not parse is skipped.
        let Ok(remote) = ip.parse::<IpAddr>() else {
            continue;
        };
        out.push(PeerBytes {
            remote,
            direction: Direction::Egress,
            bytes: bytes_in as f64,
        });
        out.push(PeerBytes {
            remote,
            direction: Direction::Ingress,
            bytes: bytes_out as f64,
        });
    }
    if let Some(total) = listed_total(&page[..start])
        && total > listed
    {
        return Err(DarkstatError::Partial {
            shown: listed,
            total,
        });
    }
    Ok(out)
}

/// `N` from darkstat's "(1-30 of N)" line above the table.
fn listed_total(before_table: &str) -> Option<u64> {
    let open = before_table.rfind('(')?;
    let inner = &before_table[open + 1..];
    let inner = &inner[..inner.find(')')?];
    let (_, total) = inner.split_once(" of ")?;
    total.trim().parse().ok()
}

/// The text of each `<th>`/`<td>` cell of one `<tr …>…` fragment.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = row;
    while let Some(open) = rest.find("<t") {
        let after = &rest[open + 2..];
        let tag = match after.as_bytes().first() {
            Some(b'd') => "</td>",
            Some(b'h') => "</th>",
            _ => {
                rest = after;
                continue;
            }
        };
        let Some(content_start) = after.find('>') else {
            break;
        };
        let content = &after[content_start + 1..];
        let content_end = content.find(tag).unwrap_or(content.len());
        out.push(text_of(&content[..content_end]));
        rest = &content[content_end..];
    }
    out
}

/// `html` without its tags, entities decoded, trimmed.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    decode_entities(text.trim())
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').and_then(|semi| {
            let entity = &after[..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .and_then(char::from_u32),
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::scrapes::exposition::parse;

    fn peer(ip: &str, direction: Direction, bytes: f64) -> PeerBytes {
        PeerBytes {
            remote: ip.parse().expect(ip),
            direction,
            bytes,
        }
    }

    #[test]
    fn metrics_of_darkstat_3_0_721() {
        let exp = parse(include_bytes!("testdata/darkstat-3.0.721-metrics.txt")).expect("parse");
        let (peers, skipped) = from_metrics(&exp).expect("family present");
        assert_eq!(skipped, Skipped::default());
        assert_eq!(
            peers,
            [
                peer("::1", Direction::Egress, 905_805.0),
                peer("::1", Direction::Ingress, 905_805.0),
                peer("127.83.0.7", Direction::Egress, 29_452.0),
                peer("127.83.0.7", Direction::Ingress, 12_936_676.0),
                peer("127.0.0.1", Direction::Egress, 12_936_676.0),
                peer("127.0.0.1", Direction::Ingress, 29_452.0),
            ]
        );
    }

    #[test]
    fn metrics_without_the_family_or_with_bad_samples() {
        let exp = parse(b"other 1\n").expect("parse");
        assert_eq!(from_metrics(&exp), Err(DarkstatError::NoFamily));
        let exp = parse(b"# TYPE host_bytes_total counter\n").expect("parse");
        assert_eq!(from_metrics(&exp), Ok((vec![], Skipped::default())));
        let exp = parse(
            b"host_bytes_total{ip=\"x\",dir=\"in\"} 1\nhost_bytes_total{ip=\"10.0.0.1\"} 2\n\
              host_bytes_total{ip=\"10.0.0.1\",dir=\"sideways\"} 3\nhost_bytes_total{ip=\"10.0.0.1\",dir=\"out\"} NaN\n\
              host_bytes_total{ip=\"10.0.0.1\",dir=\"out\"} 5\n",
        )
        .expect("parse");
        let (peers, skipped) = from_metrics(&exp).expect("family");
        assert_eq!(peers, [peer("10.0.0.1", Direction::Ingress, 5.0)]);
        assert_eq!(
            skipped,
            Skipped {
                bad_ip: 1,
                bad_dir: 2,
                bad_value: 1
            }
        );
    }

    #[test]
    fn hosts_table_of_darkstat_3_0_719() {
        let page = include_str!("testdata/darkstat-3.0.719-hosts.html");
        assert_eq!(
            from_hosts_html(page).expect("table"),
            [
                peer("127.83.0.7", Direction::Egress, 29_452.0),
                peer("127.83.0.7", Direction::Ingress, 12_936_676.0),
                peer("127.0.0.1", Direction::Egress, 12_936_676.0),
                peer("127.0.0.1", Direction::Ingress, 29_452.0),
                peer("::1", Direction::Egress, 905_805.0),
                peer("::1", Direction::Ingress, 905_805.0),
            ]
        );
        // --no-macs drops the MAC column; columns are found by their header.
        let page = include_str!("testdata/darkstat-3.0.719-hosts-no-macs.html");
        assert_eq!(
            from_hosts_html(page).expect("table"),
            [
                peer("127.83.0.7", Direction::Egress, 29_452.0),
                peer("127.83.0.7", Direction::Ingress, 12_936_676.0),
                peer("127.0.0.1", Direction::Egress, 12_936_676.0),
                peer("127.0.0.1", Direction::Ingress, 29_452.0),
            ]
        );
    }

    #[test]
    fn pages_that_are_not_a_full_hosts_table() {
        let not_found = include_str!("testdata/darkstat-3.0.719-metrics-404.html");
        assert_eq!(from_hosts_html(not_found), Err(DarkstatError::NoTable));
        let full = include_str!("testdata/darkstat-3.0.719-hosts.html");
        let paginated = full.replace("(1-3 of 3)", "(1-3 of 40)");
        assert_eq!(
            from_hosts_html(&paginated),
            Err(DarkstatError::Partial {
                shown: 3,
                total: 40
            })
        );
        let bad = full.replace("12,936,676", "12.9M");
        assert_eq!(
            from_hosts_html(&bad).map_err(|e| e.to_string()),
            Err("hosts table row 1: \"12.9M\" is not a byte count".into())
        );
        let no_out = full.replace("?sort=out\">Out", "?sort=out\">Sent");
        assert_eq!(
            from_hosts_html(&no_out),
            Err(DarkstatError::NoColumn("Out"))
        );
    }

    #[test]
    fn cell_text_drops_tags_and_decodes_entities() {
        assert_eq!(
            cells(
                "><td><a href=\"./x/\">a&amp;b &lt;c&gt; &#65;&#x42;</a></td>\n <td class=\"num\">1,2</td>"
            ),
            ["a&b <c> AB", "1,2"]
        );
        assert_eq!(decode_entities("&bogus; & &"), "&bogus; & &");
    }
}
