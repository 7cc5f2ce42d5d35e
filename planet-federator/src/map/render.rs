//! The map's output formats: SVG (laid out by [`super::layout`]) for
//! people; DOT, Mermaid and JSON for tools. Pure and deterministic.
//!
//! The SVG names what it draws, so tools and tests can read it back: each
//! service is a `<g class="node" data-service="...">`, each dependency a
//! `<g class="edge" data-from="..." data-to="..." data-ports="..."
//! data-bandwidth-bps="...">` with a `<title>` tooltip.

use std::fmt::Write as _;

use serde::Serialize;

use super::{
    graph::{Link, ServiceGraph},
    layout::{self, Layout, NodeBox, Route},
};

/// What the map shows, for its caption and the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Caption {
    pub since: String,
    pub until: String,
    pub service: Option<String>,
    pub depth: Option<usize>,
    pub min_bandwidth_bps: Option<f64>,
}

impl Caption {
    fn text(&self) -> String {
        let mut s = format!("{} .. {}", self.since, self.until);
        if let Some(svc) = &self.service {
            let depth = self.depth.unwrap_or(1);
            let _ = write!(
                s,
                " · {svc} and {depth} hop{}",
                if depth == 1 { "" } else { "s" }
            );
        }
        if let Some(bps) = self.min_bandwidth_bps {
            let _ = write!(s, " · ≥ {}", human_bps(bps));
        }
        s
    }
}

/// `1.23 Mbit/s`: three significant digits.
pub(crate) fn human_bps(bps: f64) -> String {
    let units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut v = bps.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let text = if v >= 100.0 || u == 0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{text} {}", units[u])
}

/// `5432/tcp, 5433/tcp` (at most three, then `+n`), and the bandwidth.
fn edge_label(l: &Link) -> String {
    let mut s = l
        .ports
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if l.ports.len() > 3 {
        let _ = write!(s, " +{}", l.ports.len() - 3);
    }
    if let Some(bps) = l.bandwidth_bps {
        if !s.is_empty() {
            s.push_str(" · ");
        }
        s.push_str(&human_bps(bps));
    }
    s
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Stroke width by bandwidth: 1.2 px without traffic data, otherwise 1.2
/// to 5 px on a log scale between the map's smallest and largest.
fn stroke_widths(g: &ServiceGraph) -> Vec<f64> {
    let known: Vec<f64> = g
        .links
        .iter()
        .filter_map(|l| l.bandwidth_bps)
        .filter(|b| *b > 0.0)
        .collect();
    let lo = known.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = known.iter().copied().fold(0.0, f64::max);
    g.links
        .iter()
        .map(|l| match l.bandwidth_bps {
            Some(b) if b > 0.0 && hi > lo => 1.2 + 3.8 * (b.ln() - lo.ln()) / (hi.ln() - lo.ln()),
            Some(b) if b > 0.0 => 2.5,
            _ => 1.2,
        })
        .collect()
}

const HEADER: f64 = 44.0;
/// Width of one character of the 10 px edge labels.
const LABEL_CHAR_WIDTH: f64 = 5.9;

/// The box an edge label centred above `at` takes.
fn label_box(at: (f64, f64), label: &str) -> NodeBox {
    let w = label.chars().count() as f64 * LABEL_CHAR_WIDTH + 4.0;
    NodeBox {
        x: at.0 - w / 2.0,
        y: at.1 - 14.0,
        w,
        h: 13.0,
    }
}

/// Point `t` of the cubic from `a` to `b` with horizontal tangents.
fn curve_point(a: (f64, f64), b: (f64, f64), t: f64) -> (f64, f64) {
    let dx = (b.0 - a.0) / 2.0;
    let (c1, c2) = ((a.0 + dx, a.1), (b.0 - dx, b.1));
    let u = 1.0 - t;
    let x = u * u * u * a.0 + 3.0 * u * u * t * c1.0 + 3.0 * u * t * t * c2.0 + t * t * t * b.0;
    let y = u * u * u * a.1 + 3.0 * u * u * t * c1.1 + 3.0 * u * t * t * c2.1 + t * t * t * b.1;
    (x, y)
}

fn path_data(points: &[(f64, f64)]) -> String {
    let mut d = format!("M{:.1},{:.1}", points[0].0, points[0].1);
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.1 - b.1).abs() < 0.05 {
            let _ = write!(d, " L{:.1},{:.1}", b.0, b.1);
        } else {
            let dx = (b.0 - a.0) / 2.0;
            let _ = write!(
                d,
                " C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                a.0 + dx,
                a.1,
                b.0 - dx,
                b.1,
                b.0,
                b.1
            );
        }
    }
    d
}

/// The SVG map.
pub(crate) fn svg(g: &ServiceGraph, caption: &Caption) -> String {
    let index = |name: &str| g.nodes.binary_search_by(|n| n.as_str().cmp(name)).ok();
    let labels: Vec<&str> = g.nodes.iter().map(String::as_str).collect();
    let edges: Vec<(usize, usize)> = g
        .links
        .iter()
        .filter_map(|l| Some((index(&l.from)?, index(&l.to)?)))
        .collect();
    let lay: Layout = layout::layout(&labels, &edges);
    let title = format!(
        "Planet fleet map: {} services, {} dependencies",
        g.nodes.len(),
        g.links.len()
    );
    let caption_text = caption.text();
    let width = lay
        .width
        .max(
            title.chars().count().max(caption_text.chars().count()) as f64 * 7.5
                + 2.0 * layout::MARGIN,
        )
        .ceil();
    let height = (lay.height + HEADER).max(HEADER + 60.0).ceil();
    let widths = stroke_widths(g);
    let focus = caption.service.as_deref();

    let mut s = String::with_capacity(4096 + 600 * (g.nodes.len() + g.links.len()));
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="13">"##
    );
    let _ = writeln!(s, "<title>{}</title>", xml(&title));
    s.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#5b6b7f"/></marker></defs>
<style>.node rect{fill:#eef4fb;stroke:#3a6ea5;stroke-width:1.2}.node.focus rect{fill:#fff4d6;stroke:#c28a00;stroke-width:2}.edge path{fill:none;stroke:#5b6b7f;stroke-opacity:.75}.edge.gone path{stroke-dasharray:5 4;stroke-opacity:.45}.edge text{font-size:10px;fill:#33404f;paint-order:stroke;stroke:#fff;stroke-width:3px}.edge:hover path{stroke:#c0392b;stroke-opacity:1}</style>
"##,
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{m}" y="20" font-size="15" font-weight="bold" fill="#1d2733">{}</text><text x="{m}" y="36" font-size="11" fill="#55606e">{}</text>"##,
        xml(&title),
        xml(&caption_text),
        m = layout::MARGIN,
    );
    let _ = writeln!(s, r#"<g transform="translate(0,{HEADER})">"#);

    s.push_str("<g class=\"edges\">\n");
    let mut placed: Vec<NodeBox> = Vec::new();
    let link_of = g
        .links
        .iter()
        .filter(|l| index(&l.from).is_some() && index(&l.to).is_some());
    for ((link, route), w) in link_of.zip(&lay.routes).zip(&widths) {
        let class = if link.is_active() {
            "edge"
        } else {
            "edge gone"
        };
        let label = edge_label(link);
        let bw = link
            .bandwidth_bps
            .map(|b| format!(r#" data-bandwidth-bps="{b:.0}""#))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<g class="{class}" data-from="{}" data-to="{}" data-ports="{}"{bw}>"#,
            xml(&link.from),
            xml(&link.to),
            xml(&link.ports.join(" ")),
        );
        let _ = writeln!(
            s,
            "<title>{} → {}: {}{}; first seen {}, last seen {} ({})</title>",
            xml(&link.from),
            xml(&link.to),
            xml(&link.ports.join(", ")),
            link.bandwidth_bps
                .map(|b| format!(", {}", human_bps(b)))
                .unwrap_or_default(),
            link.first_seen,
            link.last_seen,
            link.status,
        );
        let (d, candidates) = match route {
            Route::Path(points) => {
                // Label spots: each segment's middle, the route's middle first.
                let segments = points.len() / 2;
                let middle = (segments.saturating_sub(1)) / 2;
                let mut order: Vec<usize> = (0..segments).collect();
                order.sort_by_key(|&j| (j.abs_diff(middle), j));
                let spots = order
                    .into_iter()
                    .flat_map(|j| {
                        let (a, b) = (points[2 * j], points[2 * j + 1]);
                        [0.5, 0.3, 0.7].map(|t| curve_point(a, b, t))
                    })
                    .collect();
                (path_data(points), spots)
            }
            Route::SelfLoop { start, end } => (
                format!(
                    "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    start.0,
                    start.1,
                    start.0 + 10.0,
                    start.1 - 26.0,
                    end.0 - 10.0,
                    end.1 - 26.0,
                    end.0,
                    end.1
                ),
                vec![((start.0 + end.0) / 2.0, start.1 - 22.0)],
            ),
        };
        let _ = writeln!(
            s,
            r#"<path d="{d}" stroke-width="{w:.2}" marker-end="url(#arrow)"/>"#
        );
        // A label goes where it hides no other label and no service; with
        // no such spot it stays in the tooltip only.
        let spot = (!label.is_empty())
            .then(|| {
                candidates
                    .into_iter()
                    .map(|c| label_box(c, &label))
                    .find(|b| {
                        !placed.iter().any(|p| p.overlaps(b))
                            && !lay.nodes.iter().any(|n| n.overlaps(b))
                    })
            })
            .flatten();
        if let Some(b) = spot {
            placed.push(b);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                b.x + b.w / 2.0,
                b.bottom() - 3.0,
                xml(&label)
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</g>\n<g class=\"nodes\">\n");
    for (name, b) in g.nodes.iter().zip(&lay.nodes) {
        let class = if focus == Some(name.as_str()) {
            "node focus"
        } else {
            "node"
        };
        let _ = writeln!(
            s,
            r##"<g class="{class}" data-service="{n}"><title>{n}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#1d2733">{n}</text></g>"##,
            b.x,
            b.y,
            b.w,
            b.h,
            b.x + b.w / 2.0,
            // The baseline that centres 13 px text (no dominant-baseline:
            // renderers disagree on it).
            b.center_y() + 4.5,
            n = xml(name),
        );
    }
    s.push_str("</g>\n</g>\n</svg>\n");
    s
}

fn dot_string(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', " ")
    )
}

/// Graphviz DOT (`dot -Tsvg`), left to right, edge width by bandwidth.
pub(crate) fn dot(g: &ServiceGraph, caption: &Caption) -> String {
    let widths = stroke_widths(g);
    let mut s = String::from("digraph planet {\n");
    let _ = writeln!(
        s,
        "  label={};",
        dot_string(&format!("Planet fleet map {}", caption.text()))
    );
    s.push_str("  labelloc=t;\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef4fb\", fontname=\"DejaVu Sans\"];\n  edge [fontname=\"DejaVu Sans\", fontsize=10];\n");
    for n in &g.nodes {
        let extra = if caption.service.as_deref() == Some(n.as_str()) {
            " [fillcolor=\"#fff4d6\", penwidth=2]"
        } else {
            ""
        };
        let _ = writeln!(s, "  {}{extra};", dot_string(n));
    }
    for (l, w) in g.links.iter().zip(&widths) {
        let style = if l.is_active() { "" } else { ", style=dashed" };
        let _ = writeln!(
            s,
            "  {} -> {} [label={}, penwidth={w:.2}{style}];",
            dot_string(&l.from),
            dot_string(&l.to),
            dot_string(&edge_label(l)),
        );
    }
    s.push_str("}\n");
    s
}

fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '|' => out.push_str("#124;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Mermaid flowchart; node ids are `s0`, `s1`, ... in service order.
pub(crate) fn mermaid(g: &ServiceGraph, caption: &Caption) -> String {
    let mut s = String::from("flowchart LR\n");
    let _ = writeln!(
        s,
        "  %% Planet fleet map {}",
        caption.text().replace('\n', " ")
    );
    for (i, n) in g.nodes.iter().enumerate() {
        let _ = writeln!(s, "  s{i}[\"{}\"]", mermaid_text(n));
    }
    let id = |name: &str| g.nodes.binary_search_by(|n| n.as_str().cmp(name)).ok();
    for l in &g.links {
        let (Some(a), Some(b)) = (id(&l.from), id(&l.to)) else {
            continue;
        };
        let arrow = if l.is_active() { "-->" } else { "-.->" };
        let label = edge_label(l);
        if label.is_empty() {
            let _ = writeln!(s, "  s{a} {arrow} s{b}");
        } else {
            let _ = writeln!(s, "  s{a} {arrow}|\"{}\"| s{b}", mermaid_text(&label));
        }
    }
    if let Some(i) = caption.service.as_deref().and_then(id) {
        let _ = writeln!(
            s,
            "  style s{i} fill:#fff4d6,stroke:#c28a00,stroke-width:2px"
        );
    }
    s
}

/// The JSON document: the window and filters, the services and the links.
#[derive(Debug, Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    caption: &'a Caption,
    services: &'a [String],
    dependencies: &'a [Link],
}

pub(crate) fn json(g: &ServiceGraph, caption: &Caption) -> String {
    let doc = Document {
        caption,
        services: &g.nodes,
        dependencies: &g.links,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(from: &str, to: &str, bw: Option<f64>, status: &'static str) -> Link {
        Link {
            from: from.into(),
            to: to.into(),
            ports: vec!["5432/tcp".into()],
            bandwidth_bps: bw,
            first_seen: "2026-11-25T10:00:00Z".into(),
            last_seen: "2026-11-25T11:00:00Z".into(),
            status,
        }
    }

    fn graph() -> ServiceGraph {
        ServiceGraph {
            nodes: vec!["db".into(), "lb".into(), "web \"1\" <&>".into()],
            links: vec![
                link("lb", "web \"1\" <&>", Some(2_500_000.0), "active"),
                link("web \"1\" <&>", "db", None, "gone"),
            ],
        }
    }

    fn caption() -> Caption {
        Caption {
            since: "2026-11-25T10:00:00Z".into(),
            until: "2026-11-25T11:00:00Z".into(),
            service: Some("lb".into()),
            depth: Some(2),
            min_bandwidth_bps: None,
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bps(999.0), "999 bit/s");
        assert_eq!(human_bps(1_200_000.0), "1.20 Mbit/s");
        assert_eq!(human_bps(45_600.0), "45.6 kbit/s");
        assert_eq!(human_bps(3.2e9), "3.20 Gbit/s");
    }

    #[test]
    fn svg_is_escaped_deterministic_and_names_what_it_draws() {
        let s = svg(&graph(), &caption());
        assert_eq!(s, svg(&graph(), &caption()));
        assert!(
            s.contains(r#"data-service="web &quot;1&quot; &lt;&amp;&gt;""#),
            "{s}"
        );
        assert!(s.contains(r#"<g class="edge" data-from="lb" data-to="web &quot;1&quot; &lt;&amp;&gt;" data-ports="5432/tcp" data-bandwidth-bps="2500000">"#), "{s}");
        assert!(s.contains(
            r#"<g class="edge gone" data-from="web &quot;1&quot; &lt;&amp;&gt;" data-to="db""#
        ));
        assert!(s.contains(r#"<g class="node focus" data-service="lb">"#));
        assert!(s.contains("5432/tcp · 2.50 Mbit/s"));
        assert_eq!(s.matches("data-service=").count(), 3);
        assert_eq!(s.matches("marker-end").count(), 2);
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn dot_and_mermaid() {
        let d = dot(&graph(), &caption());
        assert!(d.starts_with("digraph planet {\n"), "{d}");
        assert!(
            d.contains(
                r#"  "lb" -> "web \"1\" <&>" [label="5432/tcp · 2.50 Mbit/s", penwidth=2.50];"#
            ),
            "{d}"
        );
        assert!(
            d.contains(
                r#"  "web \"1\" <&>" -> "db" [label="5432/tcp", penwidth=1.20, style=dashed];"#
            ),
            "{d}"
        );
        assert!(d.contains(r##"  "lb" [fillcolor="#fff4d6", penwidth=2];"##));
        let m = mermaid(&graph(), &caption());
        assert!(m.starts_with("flowchart LR\n"));
        assert!(m.contains("  s2[\"web #quot;1#quot; #lt;&#gt;\"]"), "{m}");
        assert!(m.contains("  s1 -->|\"5432/tcp · 2.50 Mbit/s\"| s2"), "{m}");
        assert!(m.contains("  s2 -.->|\"5432/tcp\"| s0"), "{m}");
        assert!(m.contains("  style s1 "));
    }

    #[test]
    fn json_document() {
        let v: serde_json::Value = serde_json::from_str(&json(&graph(), &caption())).unwrap();
        assert_eq!(v["service"], "lb");
        assert_eq!(v["depth"], 2);
        assert_eq!(v["services"].as_array().unwrap().len(), 3);
        assert_eq!(v["dependencies"][0]["from"], "lb");
        assert_eq!(v["dependencies"][0]["bandwidth_bps"], 2_500_000.0);
        assert_eq!(
            v["dependencies"][1]["bandwidth_bps"],
            serde_json::Value::Null
        );
        assert_eq!(v["dependencies"][1]["status"], "gone");
    }

    #[test]
    fn sixty_service_svg_has_every_node_and_edge() {
        let (names, edges) = super::super::layout::tests::synthetic_fleet();
        let g = ServiceGraph {
            nodes: {
                let mut n = names.clone();
                n.sort();
                n
            },
            links: {
                let mut l: Vec<Link> = edges
                    .iter()
                    .map(|&(a, b)| {
                        link(
                            &names[a],
                            &names[b],
                            Some(1000.0 * (a + b + 1) as f64),
                            "active",
                        )
                    })
                    .collect();
                l.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
                l
            },
        };
        let s = svg(&g, &Caption::default());
        if let Ok(dir) = std::env::var("PLANET_MAP_SVG_DIR") {
            std::fs::write(format!("{dir}/synthetic-60.svg"), &s).unwrap();
        }
        for n in &names {
            assert!(s.contains(&format!(r#"data-service="{n}""#)), "{n}");
        }
        for &(a, b) in &edges {
            assert!(
                s.contains(&format!(
                    r#"data-from="{}" data-to="{}""#,
                    names[a], names[b]
                )),
                "{} -> {}",
                names[a],
                names[b]
            );
        }
    }
}
