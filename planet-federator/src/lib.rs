//! planet-federator: fleet aggregation of planet-agent metrics.
//!
//! On a cron schedule it asks Prometheus for every agent's traffic and
//! dependencies (the original's PromQL), writes one point per service pair
//! to InfluxDB (the original's measurements, tags and fields), keeps the
//! history of service edges, and exports the aggregations for BigQuery.
//! See the crate README for flags, differences from the Go original, and
//! example queries.

mod aggregate;
pub mod app;
pub mod bigquery;
pub mod cli;
mod edges;
pub mod history;
mod http;
pub mod influx;
pub mod jobs;
mod map;
pub mod metrics;
pub mod prom;
pub mod promql;
mod schedule;
