//! The daemon's HTTP server: `GET /metrics` for Prometheus and `GET /healthz` for probes.
//!
//! The daemon builds the [`router`] from an [`HttpState`] (its [`Metrics`](crate::telemetry::Metrics)
//! handle and its [`Health`]), merges its own routes into it (the JSON API goes under `/api/v1`),
//! and hands the result to [`serve`] (or [`Server::bind`] and [`Server::run`], to learn the bound
//! address first) with a future that completes on shutdown.
//!
//! - `GET /metrics`: the OpenMetrics 1.0 text exposition, content type
//!   `application/openmetrics-text; version=1.0.0; charset=utf-8`.
//! - `GET /healthz`: `{"status": "ok"|"degraded", "version", "uptime_seconds", "checks": [{"name",
//!   "status": "ok"|"failing", "message"?, "age_seconds"?}]}` with 200 when every check passes and
//!   503 when one fails. The daemon reports checks through [`Health`]: [`Health::ok`] /
//!   [`Health::failing`] for states it observes (catalog reachable), [`Health::beat`] for loops
//!   that must keep running (the scheduler), whose silence counts as failure.
//!
//! Neither route needs a token: both say only what a dashboard shows. That is why the default
//! listen address is loopback; expose it further only behind something that limits who can reach it.

mod health;
mod routes;
mod serve;
pub mod tls;

pub use health::{CheckReport, CheckStatus, Health, HealthReport, HealthStatus};
pub use routes::{HttpState, router};
pub use serve::{DEFAULT_DRAIN_TIMEOUT, ServeError, Server, serve};
