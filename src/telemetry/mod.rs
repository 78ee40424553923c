//! Telemetry: typed events in, Prometheus metrics out.
//!
//! The daemon reports what happened through one [`Metrics`] handle (`backup_succeeded`,
//! `restorable_point`, `drill_finished`, `job_finished`, …); it never touches a raw metric, so names,
//! labels and units stay consistent. [`Metrics::encode`] renders the registry in the OpenMetrics text
//! format (`prometheus-client` speaks only OpenMetrics), which `GET /metrics` serves with
//! [`CONTENT_TYPE`]; Prometheus negotiates it on its own.
//!
//! Encodings worth knowing:
//! - `lifeboat_rpo_seconds` is computed at scrape time from the newest restorable point, so it keeps
//!   growing while no new point arrives. A source appears once [`Metrics::restorable_point`] was
//!   called for it (the daemon seeds it from the catalog at start-up).
//! - `lifeboat_drill_verdict{drill, verdict}` is 1 for the last run's verdict and 0 for the other
//!   verdicts (`pass`, `fail`, `sla-breach`, `error`), so `lifeboat_drill_verdict{verdict!="pass"} == 1`
//!   finds every drill that is not passing.
//! - `lifeboat_backup_bytes_total{source, kind}`: `kind="read"` counts what the database tool
//!   produced, `kind="stored"` what was uploaded after deduplication and compression.
//! - Failure and miss counters appear at 0 as soon as a target has run once, so `increase()` also
//!   catches the first failure.
//! - Label values (source, drill, sink names) are escaped by the encoder; any string is safe.
//!
//! The exported metrics (this table is [`definitions::markdown_table`], checked by a test):
//!
#![doc = include_str!("metrics.md")]

pub mod definitions;
mod metrics;
mod rpo;

pub use definitions::{DRILL_VERDICTS, METRICS, MetricDef, MetricKind};
pub use metrics::{Metrics, TOTAL_PHASE};

/// The content type of [`Metrics::encode`]'s output: OpenMetrics 1.0 text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
