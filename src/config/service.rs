//! The parts of the config that only the daemon reads: `daemon:`, each source's `schedule:`,
//! `retention:` and `pings:`, and `alerts:`. Validated like the rest (see `validate/service.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono_tz::Tz;

use super::secret::SecretRef;
use crate::schedule::Schedule;

/// `daemon:`; every key has a default, so a config without the section runs a daemon too.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// `/metrics`, `/healthz` (and later the API). Default `127.0.0.1:9187`.
    pub listen: SocketAddr,
    /// The zone schedules are read in unless they name their own. Default UTC.
    pub timezone: Tz,
    /// A run missed while the daemon was down runs once at start if it was due at most this long
    /// ago; older ones are reported as missed. Default 6h.
    pub catch_up: Duration,
    /// Each run starts after a random delay up to this, so that many daemons with the same
    /// schedules do not hit one database at the same second. Default 0.
    pub jitter: Duration,
    /// On SIGTERM/SIGINT running jobs get this long to finish before they are cancelled. Default 5m.
    pub shutdown_grace: Duration,
    /// How long a claimed job stays claimed without its daemon renewing it: the time another
    /// daemon waits before taking over from one that died. Default 2m.
    pub lease: Duration,
}

impl DaemonConfig {
    /// `timezone` as jiff knows it, for counting retention's hours, days and weeks (chrono-tz and
    /// jiff share the IANA database; an unknown name cannot pass validation, UTC is the fallback).
    pub fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(self.timezone.name()).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
            timezone: Tz::UTC,
            catch_up: Duration::from_secs(6 * 3600),
            jitter: Duration::ZERO,
            shutdown_grace: Duration::from_secs(300),
            lease: Duration::from_secs(120),
        }
    }
}

/// A source's `schedule:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceSchedules {
    pub backup: Option<Schedule>,
    pub verify: Option<Schedule>,
    pub prune: Option<Schedule>,
    /// Copies the source's snapshots to each of its `copy_to` repositories.
    pub copy: Option<Schedule>,
}

/// A source's `pings:`: healthchecks-style dead-man URLs per job. The run pings `URL/start` when
/// it starts, `URL` when it succeeds and `URL/fail` when it fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePings {
    pub backup: Option<SecretRef>,
    pub verify: Option<SecretRef>,
    pub prune: Option<SecretRef>,
    pub copy: Option<SecretRef>,
}

/// `alerts:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfigSpec {
    /// An open alert that has not changed is sent again after this long. Default 4h.
    pub reminder: Duration,
    pub sinks: BTreeMap<String, SinkSpec>,
    pub routes: BTreeMap<String, RouteSpec>,
}

impl Default for AlertsConfigSpec {
    fn default() -> AlertsConfigSpec {
        AlertsConfigSpec {
            reminder: Duration::from_secs(4 * 3600),
            sinks: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }
}

/// One place alerts go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// A JSON POST of every firing and resolved alert.
    Webhook { url: SecretRef },
    /// A Slack incoming webhook.
    Slack { url: SecretRef },
    /// PagerDuty Events API v2.
    PagerDuty {
        routing_key: SecretRef,
        endpoint: Option<url::Url>,
    },
    Email {
        /// `smtp://host:port`.
        server: url::Url,
        tls: SmtpTls,
        username: Option<String>,
        password: Option<SecretRef>,
        from: String,
        to: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587). The default.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeverityFloor {
    Info,
    Warning,
    Critical,
}

/// A named route: which alerts go to which sinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub sinks: Vec<String>,
    /// Alerts below this severity do not take this route. Default `warning`.
    pub min_severity: SeverityFloor,
    /// Source-name globs (`orders*`); empty means every source.
    pub sources: Vec<String>,
}
