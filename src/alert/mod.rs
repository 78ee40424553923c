//! Alerting: routes alerts to sinks (generic webhook, Slack, PagerDuty Events v2, email),
//! de-duplicates them, resolves them, and sends dead-man pings.
//!
//! The daemon builds an [`Alerter`] once ([`Alerter::start`], with an [`AlertsConfig`] and the
//! path of a state file), then calls [`Alerter::raise`] whenever a check finds a problem (again
//! on every check while the problem lasts) and [`Alerter::resolve`] when the check passes.
//! Neither waits for a receiver; [`Alerter::shutdown`] flushes what is queued.
//!
//! # Alerts
//!
//! An [`Alert`] has a [`AlertKind`] (stable snake_case ids: `backup_failed`, `rpo_at_risk`,
//! `rpo_breached`, `drill_failed`, `sla_breached`, `rto_trending`, `corruption_found`,
//! `repository_unreachable`, `fate_critical`, `jobs_missed`), a [`Severity`] (`info`, `warning`,
//! `critical`), a one-line summary, optionally a source and a drill, a `details` object, and a
//! key. The key identifies the alert across raises and restarts; by default it is
//! `<kind>:<drill or source>`, e.g. `backup_failed:orders` ([`AlertKind::key`] computes it
//! for [`Alerter::resolve`]).
//!
//! # Routing
//!
//! Routes are named; each lists sinks, a minimum severity and optional source-name globs (`*`,
//! `?`). An alert that names routes ([`Alert::with_routes`], a drill's `alerts: [oncall]`) goes
//! to those routes only, if it reaches each route's minimum severity; the source globs do not
//! apply to it. An alert that names no route goes to every route whose minimum severity it
//! reaches and whose globs match its source (a route without globs takes every alert, with or
//! without a source; a route with globs never takes an alert without a source). A sink on
//! several matching routes gets the alert once. An alert that no route takes is still tracked
//! (and logged), so that a later change that does match is sent.
//!
//! # De-duplication and resolve
//!
//! - A key that is not open: the alert is sent and becomes open.
//! - An open key raised with the same severity and summary: not sent, unless the reminder
//!   interval ([`AlertsConfig::reminder`]) has passed since it was last sent, then sent again.
//!   Details may change without counting (they often hold a growing age).
//! - An open key raised with another severity or summary: sent at once, to the sinks that the
//!   new severity selects.
//! - [`Alerter::resolve`] of an open key sends a resolve to every sink the alert was sent to
//!   while open, and closes it. Resolving a key that is not open sends nothing.
//!
//! Open alerts are kept in a JSON file (rewritten whole after each raise and resolve: temp
//! file, fsync, rename) and read back at start: a restarted daemon neither pages again for an
//! alert that is still open and unchanged, nor forgets to resolve one. A file that cannot be
//! read is renamed to `<file>.unreadable-<unix seconds>` and alerting starts with no open
//! alert (and logs why).
//!
//! # Delivery
//!
//! Each sink has its own queue (1024 messages) and worker task, so messages to one sink go out in
//! order (a resolve never overtakes its trigger) and a slow or failing sink delays no other.
//! An attempt fails on a transport error, a non-2xx HTTP answer (redirects are not followed), an
//! SMTP error, or no answer within [`RetryPolicy::attempt_timeout`]. Failed attempts are
//! retried with exponential backoff ([`RetryPolicy`]: `initial_delay`, doubled each time, capped
//! at `max_delay`, `max_attempts` in all), except answers that retrying cannot change: HTTP 4xx
//! other than 408 and 429, and permanent (5xx) SMTP replies. Each failure is logged with the sink's
//! name and the alert key; [`Alerter::stats`] gives per-sink counters (delivered, failed,
//! retries, dropped, queued) for the metrics layer.
//!
//! # What each sink sends
//!
//! **Webhook**: `POST <url>` with `Content-Type: application/json`:
//!
//! ```json
//! {
//!   "version": 1,
//!   "status": "firing",
//!   "key": "backup_failed:orders",
//!   "kind": "backup_failed",
//!   "severity": "critical",
//!   "source": "orders",
//!   "drill": null,
//!   "summary": "pg_dump exited with status 1",
//!   "details": {"exit_code": 1},
//!   "first_seen": "2026-11-23T10:00:00Z",
//!   "last_seen": "2026-11-23T10:05:00Z",
//!   "resolved_at": null
//! }
//! ```
//!
//! `status` is `firing` or `resolved`; a resolve repeats the last firing fields and sets
//! `resolved_at`. `source` and `drill` may be `null`. Times are RFC 3339 in UTC. `first_seen`
//! is when the alert opened, `last_seen` its latest raise. Fields are only ever added; a change
//! of meaning would bump `version`.
//!
//! **Slack** (incoming webhook): `POST <webhook_url>` with `{"text": "..."}`, where the text is
//! `[lifeboat] CRITICAL backup_failed orders: <summary>` (`RESOLVED` instead of the severity once
//! resolved), then `key: <key>` and one `name: value` line per detail.
//!
//! **PagerDuty** (Events API v2): `POST <endpoint>` (default
//! `https://events.pagerduty.com/v2/enqueue`). Firing:
//!
//! ```json
//! {
//!   "routing_key": "<routing key>",
//!   "event_action": "trigger",
//!   "dedup_key": "backup_failed:orders",
//!   "client": "lifeboat",
//!   "payload": {
//!     "summary": "backup_failed orders: pg_dump exited with status 1",
//!     "source": "orders",
//!     "severity": "critical",
//!     "timestamp": "2026-11-23T10:05:00Z",
//!     "component": "backup_failed",
//!     "custom_details": {"exit_code": 1, "kind": "backup_failed", "key": "backup_failed:orders",
//!                        "first_seen": "2026-11-23T10:00:00Z"}
//!   }
//! }
//! ```
//!
//! Resolved: `{"routing_key": ..., "event_action": "resolve", "dedup_key": <the same key>}`.
//! The dedup key is the alert key, so reminders and changes update one incident. `source` is the
//! alert's source, else its drill, else `lifeboat`; `custom_details` also has `drill` when set.
//! Summaries are cut to PagerDuty's 1024 bytes.
//!
//! **Email** (SMTP): one plain-text message to all recipients. Subject
//! `[lifeboat] CRITICAL backup_failed orders: <summary>` (`RESOLVED` once resolved); the body
//! repeats the headline and summary, then `status`, `key`, `kind`, `severity`, `source`, `drill`,
//! `first seen`, `last seen`, `resolved`, and the details, one per line. Connections use STARTTLS
//! (default, port 587, refused if the server does not offer it) or TLS (port 465); plain SMTP
//! (port 25) is accepted only to a loopback host. Login happens only when a username is set.
//!
//! # Secrets
//!
//! Webhook and Slack URLs, PagerDuty routing keys, SMTP passwords and ping URLs are
//! [`crate::config::Secret`]s: `Debug` shows `[redacted]`, config problems never repeat them, and
//! delivery errors are built without the URL and scrubbed of every secret of the sink.
//!
//! # Dead-man pings
//!
//! [`DeadManPing`] tells an outside monitor (healthchecks.io or alike) that a job started
//! (`GET` start URL), succeeded (`GET` success URL) or failed (`POST` the message as text to
//! the fail URL). A ping that fails is logged and otherwise ignored.

mod config;
mod deadman;
mod event;
mod payload;
mod route;
mod sink;
mod state;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

pub use config::{
    AlertConfigProblem, AlertsConfig, EmailSink, PAGERDUTY_EVENTS_URL, PagerDutySink, RetryPolicy, RouteConfig,
    SinkConfig, SlackSink, SmtpTls, WebhookSink,
};
pub use deadman::{DeadManConfig, DeadManPing};
pub use event::{Alert, AlertKind, Severity};
pub use payload::WEBHOOK_PAYLOAD_VERSION;
pub(crate) use route::glob_match;
pub use state::{OpenAlert, SendReason};
pub use worker::SinkStats;

use payload::{Notice, Status};
use sink::Sink;
use state::AlertState;
use worker::SinkWorker;

/// Why an [`Alerter`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("the alerts config has problems:\n{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    InvalidConfig { problems: Vec<AlertConfigProblem> },
    #[error("cannot set up sink `{sink}`: {message}; fix: correct the sink's settings")]
    Sink { sink: String, message: String },
    #[error(
        "cannot set up the HTTP client for alerts: {0}; fix: check that the system's TLS \
         certificates are installed"
    )]
    HttpClient(String),
    #[error("the alerter must start inside a tokio runtime; fix: call Alerter::start from async code")]
    NoRuntime,
}

/// What [`Alerter::raise`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaiseOutcome {
    /// Queued for these sinks (none when no route takes the alert).
    Sent { reason: SendReason, sinks: Vec<String> },
    /// Open and unchanged, and the reminder interval has not passed: nothing sent.
    Unchanged,
}

/// What [`Alerter::resolve`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveOutcome {
    /// The alert was open: resolves queued for these sinks.
    Resolved { sinks: Vec<String> },
    /// No alert with this key was open: nothing sent.
    NotOpen,
}

/// What [`Alerter::shutdown`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Messages still queued or in delivery when the deadline came (they are lost).
    pub undelivered: u64,
}

/// Routes, de-duplicates and delivers alerts. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

struct Inner {
    routes: BTreeMap<String, RouteConfig>,
    /// Routes switched off (through an approved request); alerts do not take them.
    disabled_routes: Mutex<std::collections::BTreeSet<String>>,
    reminder: Duration,
    state: Mutex<AlertState>,
    sinks: BTreeMap<String, SinkWorker>,
}

impl Alerter {
    /// Validates `config`, reads the open alerts from `state_file` (created on the first change;
    /// its directory too), and starts one delivery task per sink on the current tokio runtime.
    pub fn start(config: AlertsConfig, state_file: impl Into<PathBuf>) -> Result<Alerter, AlertError> {
        config
            .validate()
            .map_err(|problems| AlertError::InvalidConfig { problems })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(AlertError::NoRuntime);
        }
        let retry = config.retry.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(retry.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::HttpClient(sink::error_chain(&e.without_url())))?;
        let mut sinks = BTreeMap::new();
        for (name, sink_config) in &config.sinks {
            let sink = Sink::build(sink_config, retry.attempt_timeout).map_err(|message| AlertError::Sink {
                sink: name.clone(),
                message,
            })?;
            let worker = SinkWorker::spawn(name.clone(), sink_config.kind(), sink, http.clone(), retry.clone());
            sinks.insert(name.clone(), worker);
        }
        let state = AlertState::load(state_file.into());
        Ok(Alerter {
            inner: Arc::new(Inner {
                routes: config.routes,
                disabled_routes: Mutex::default(),
                reminder: config.reminder,
                state: Mutex::new(state),
                sinks,
            }),
        })
    }

    /// Switches these routes off (and every other one on): from now on alerts do not take them.
    /// Alerts already queued are still delivered.
    pub fn set_disabled_routes(&self, routes: impl IntoIterator<Item = String>) {
        let mut disabled = self.inner.disabled_routes.lock().unwrap_or_else(|e| e.into_inner());
        *disabled = routes.into_iter().collect();
    }

    /// Raises `alert`: sends it if it is new, changed, or due for a reminder (see the module
    /// doc), and records it as open. Returns at once; delivery happens in the background.
    pub fn raise(&self, alert: Alert) -> RaiseOutcome {
        let inner = &self.inner;
        let (sinks, unknown_routes) = {
            let off = inner.disabled_routes.lock().unwrap_or_else(|e| e.into_inner());
            route::select_sinks(&inner.routes, &off, &alert)
        };
        let key = alert.key();
        // Queue under the state lock, so that a concurrent resolve of the same key cannot queue
        // its resolve ahead of this trigger.
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let (reason, open) = state.raise(&alert, &sinks, Timestamp::now(), inner.reminder);
        state.persist();
        let Some(reason) = reason else {
            tracing::debug!(%key, "alert unchanged; not sent again yet");
            return RaiseOutcome::Unchanged;
        };
        for name in unknown_routes {
            tracing::warn!(
                %key,
                route = name,
                "alert names route `{name}`, which is not configured; it does not take that route \
                 (fix: define the route under `alerts.routes` or correct the name)"
            );
        }
        if sinks.is_empty() {
            // Often on purpose (no route wants `info`), so not a warning.
            tracing::info!(
                %key,
                severity = %alert.severity(),
                "no route takes this alert (severity or source match none), so it is sent nowhere"
            );
        }
        let notice = Arc::new(Notice {
            status: Status::Firing,
            alert: open,
            resolved_at: None,
        });
        for name in &sinks {
            if let Some(worker) = inner.sinks.get(name) {
                worker.enqueue(notice.clone());
            }
        }
        tracing::info!(%key, ?reason, sinks = sinks.len(), "alert queued for delivery");
        RaiseOutcome::Sent {
            reason,
            sinks: sinks.into_iter().collect(),
        }
    }

    /// Resolves the alert with this key, if it is open: sends a resolve to every sink it went
    /// to and closes it. Returns at once.
    pub fn resolve(&self, key: &str) -> ResolveOutcome {
        let inner = &self.inner;
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(open) = state.resolve(key) else {
            return ResolveOutcome::NotOpen;
        };
        state.persist();
        let sinks: Vec<String> = open
            .sinks
            .iter()
            .filter(|s| inner.sinks.contains_key(*s))
            .cloned()
            .collect();
        let notice = Arc::new(Notice {
            status: Status::Resolved,
            alert: open,
            resolved_at: Some(Timestamp::now()),
        });
        for name in &sinks {
            inner.sinks[name].enqueue(notice.clone());
        }
        tracing::info!(%key, sinks = sinks.len(), "alert resolved");
        ResolveOutcome::Resolved { sinks }
    }

    /// The open alerts, ordered by key.
    pub fn open_alerts(&self) -> Vec<OpenAlert> {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open_alerts().cloned().collect()
    }

    /// Delivery counters per sink, ordered by sink name.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.inner.sinks.values().map(SinkWorker::stats).collect()
    }

    /// Stops taking new messages and waits up to `deadline` for the queued ones to be delivered
    /// (retries included); what is left then is abandoned and counted in the report. Raises and
    /// resolves after this still update the open alerts, but send nothing.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let until = tokio::time::Instant::now() + deadline;
        let tasks: Vec<_> = self.inner.sinks.values().filter_map(SinkWorker::close).collect();
        for mut task in tasks {
            if tokio::time::timeout_at(until, &mut task).await.is_err() {
                task.abort();
            }
        }
        let undelivered = self.stats().iter().map(|s| s.queued).sum();
        if undelivered > 0 {
            tracing::warn!(undelivered, "alerter shut down with alert messages still undelivered");
        }
        ShutdownReport { undelivered }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alerter_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Alerter>();
        shareable::<DeadManPing>();
    }
}
