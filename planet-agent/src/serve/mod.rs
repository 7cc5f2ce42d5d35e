//! Serving: everything here reads the current [`Snapshot`](crate::model::Snapshot)
//! and nothing else; a request never touches the kernel.
//!
//! - [`http`]: the server (TLS, auth, compression) and `/metrics`.
//! - [`metrics`]: the snapshot as Prometheus text.
//! - [`api`]: the snapshot as the `/api/v1/dependencies` document.
//! - [`web`]: the dependency page and its API route.
//! - [`web_config`]: `-web.config.file` (TLS, basic auth, headers).

pub mod api;
pub mod http;
pub mod metrics;
pub mod web;
pub mod web_config;
