//! `planet-federator map`: the fleet's service dependency map for a time
//! window, from what the federator stored: the dependency history
//! (`service_edge`, read through [`crate::history::load`]) for the links,
//! the traffic measurements (`ingress`, `egress`) for their bandwidth.
//!
//! [`graph`] folds and filters, [`layout`] places, [`render`] writes SVG,
//! DOT, Mermaid or JSON; all three are pure. This module only reads.

mod graph;
mod layout;
mod render;

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;

use crate::{
    cli::MapArgs,
    edges::{self, EdgesError},
    history,
    influx::{InfluxClient, query::QueryError},
};
pub(crate) use graph::{GraphError, ServiceGraph};
pub(crate) use render::Caption;

#[derive(Debug, Error)]
pub enum MapError {
    #[error(transparent)]
    Window(#[from] EdgesError),
    #[error("cannot read the dependency history")]
    History(#[source] QueryError),
    #[error("cannot read the traffic measurements")]
    Traffic(#[source] QueryError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("unknown map format {0:?} (use svg, dot, mermaid or json)")]
    Format(String),
}

/// What to draw; the command line's and the HTTP page's parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MapQuery {
    pub since: String,
    pub until: String,
    pub stale_after: std::time::Duration,
    pub service: Option<String>,
    pub depth: usize,
    pub min_bandwidth: Option<f64>,
}

impl From<&MapArgs> for MapQuery {
    fn from(a: &MapArgs) -> Self {
        Self {
            since: a.since.clone(),
            until: a.until.clone(),
            stale_after: a.stale_after,
            service: a.service.clone(),
            depth: a.depth,
            min_bandwidth: a.min_bandwidth,
        }
    }
}

/// The traffic query: each host pair's mean bandwidth in the window.
pub(crate) fn traffic_query(since: Timestamp, until: Timestamp) -> String {
    format!(
        "SELECT mean(\"bandwidth_bps\") FROM \"ingress\", \"egress\" WHERE time >= {} AND time <= {} \
         GROUP BY \"service\", \"remote_service\", \"address\", \"remote_address\"",
        since.as_nanosecond(),
        until.as_nanosecond()
    )
}

/// Reads the window's history and traffic and builds the filtered graph.
pub(crate) async fn load(
    influx: &InfluxClient,
    q: &MapQuery,
    now: Timestamp,
) -> Result<(ServiceGraph, Caption), MapError> {
    let (since, until) = edges::window(&q.since, &q.until, now)?;
    let stored = history::load(influx, None)
        .await
        .map_err(MapError::History)?;
    let traffic = influx
        .query_one(&traffic_query(since, until))
        .await
        .map_err(MapError::Traffic)?;
    let stale = SignedDuration::try_from(q.stale_after).unwrap_or(SignedDuration::MAX);
    let mut g = ServiceGraph::from_edges(&stored, since, until, stale);
    g.join_bandwidth(&graph::bandwidth_from_series(&traffic));
    if let Some(min) = q.min_bandwidth {
        g.min_bandwidth(min);
    }
    if let Some(service) = &q.service {
        g.neighbourhood(service, q.depth)?;
    }
    let second = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    let caption = Caption {
        since: second(since).to_string(),
        until: second(until).to_string(),
        service: q.service.clone(),
        depth: q.service.as_ref().map(|_| q.depth),
        min_bandwidth_bps: q.min_bandwidth,
    };
    Ok((g, caption))
}

/// Renders `g` as `format` (svg, dot, mermaid or json).
pub(crate) fn render(
    format: &str,
    g: &ServiceGraph,
    caption: &Caption,
) -> Result<String, MapError> {
    Ok(match format {
        "svg" => render::svg(g, caption),
        "dot" => render::dot(g, caption),
        "mermaid" => render::mermaid(g, caption),
        "json" => render::json(g, caption),
        other => return Err(MapError::Format(other.to_owned())),
    })
}

/// The `map` command's output.
pub(crate) async fn run(
    influx: &InfluxClient,
    args: &MapArgs,
    now: Timestamp,
) -> Result<String, MapError> {
    let (g, caption) = load(influx, &MapQuery::from(args), now).await?;
    render(&args.format, &g, &caption)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_query_is_bounded_by_the_window() {
        let q = traffic_query(
            Timestamp::from_second(100).unwrap(),
            Timestamp::from_second(200).unwrap(),
        );
        assert!(
            q.contains("time >= 100000000000 AND time <= 200000000000"),
            "{q}"
        );
        assert!(q.contains("FROM \"ingress\", \"egress\""));
    }

    #[test]
    fn unknown_format_is_an_error() {
        let g = ServiceGraph::default();
        assert!(render("png", &g, &Caption::default()).is_err());
        assert!(
            render("svg", &g, &Caption::default())
                .unwrap()
                .starts_with("<svg")
        );
    }
}
