//! The daemon's health checks: named states the daemon reports (catalog reachable, repository
//! writable, …) and heartbeats (the scheduler ticks), summed up into what `GET /healthz` answers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The daemon's health: cheap to clone, shared between the tasks that report and the HTTP server.
///
/// Messages are shown to anyone who can reach `/healthz`: say what is wrong and what to do, and
/// never include a secret (a DSN with a password, a webhook URL).
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

struct State {
    started: Instant,
    checks: BTreeMap<String, Check>,
}

enum Check {
    Ok,
    Failing(String),
    /// Healthy while the last beat is at most `max_age` old: a stuck loop cannot report its own
    /// failure, so its silence has to count as one.
    Heartbeat {
        last: Instant,
        max_age: Duration,
    },
}

/// `ok` when every check passes, `degraded` when at least one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// One check's state as `/healthz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Failing,
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub version: String,
    pub uptime_seconds: f64,
    /// In name order.
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub name: String,
    pub status: CheckStatus,
    /// Why the check fails; absent when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For heartbeats: seconds since the last beat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
}

impl Health {
    /// No checks yet: healthy. Uptime counts from here.
    pub fn new() -> Self {
        Health {
            inner: Arc::new(Mutex::new(State {
                started: Instant::now(),
                checks: BTreeMap::new(),
            })),
        }
    }

    /// Check `name` passes (again).
    pub fn ok(&self, name: &str) {
        self.state().checks.insert(name.to_owned(), Check::Ok);
    }

    /// Check `name` fails; `message` says what is wrong and what to do about it.
    pub fn failing(&self, name: &str, message: impl Into<String>) {
        self.state()
            .checks
            .insert(name.to_owned(), Check::Failing(message.into()));
    }

    /// A beat of heartbeat `name` (e.g. each scheduler tick): the check fails once no beat came for
    /// longer than `max_age`. The first beat registers the check.
    pub fn beat(&self, name: &str, max_age: Duration) {
        let check = Check::Heartbeat {
            last: Instant::now(),
            max_age,
        };
        self.state().checks.insert(name.to_owned(), check);
    }

    /// Stop reporting check `name` (its subsystem was switched off).
    pub fn remove(&self, name: &str) {
        self.state().checks.remove(name);
    }

    /// The state of every check now.
    pub fn report(&self) -> HealthReport {
        let state = self.state();
        let now = Instant::now();
        let checks: Vec<CheckReport> = state
            .checks
            .iter()
            .map(|(name, check)| check.report(name, now))
            .collect();
        let status = if checks.iter().all(|c| c.status == CheckStatus::Ok) {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        };
        HealthReport {
            status,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: now.duration_since(state.started).as_secs_f64(),
            checks,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update replaces a whole entry, so a map left by a panicking holder is still sound.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Check {
    fn report(&self, name: &str, now: Instant) -> CheckReport {
        let (status, message, age_seconds) = match self {
            Check::Ok => (CheckStatus::Ok, None, None),
            Check::Failing(message) => (CheckStatus::Failing, Some(message.clone()), None),
            Check::Heartbeat { last, max_age } => {
                let age = now.duration_since(*last);
                if age > *max_age {
                    let message = format!(
                        "no heartbeat for {}, more than the {} allowed: it may be stuck; the daemon's \
                         log says what it last did",
                        seconds(age),
                        seconds(*max_age)
                    );
                    (CheckStatus::Failing, Some(message), Some(age.as_secs_f64()))
                } else {
                    (CheckStatus::Ok, None, Some(age.as_secs_f64()))
                }
            }
        };
        CheckReport {
            name: name.to_owned(),
            status,
            message,
            age_seconds,
        }
    }
}

/// "93 s", or "0.4 s" below ten seconds where whole seconds would round to nothing.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.report();
        f.debug_struct("Health")
            .field("status", &report.status)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_checks_is_healthy_and_one_failing_check_degrades() {
        let health = Health::new();
        assert_eq!(health.report().status, HealthStatus::Ok);
        health.ok("catalog");
        health.failing(
            "repository",
            "cannot write to s3://backups: access denied; check the writer key",
        );
        let report = health.report();
        assert_eq!(report.status, HealthStatus::Degraded);
        assert_eq!(report.checks.len(), 2);
        assert_eq!(report.checks[0].name, "catalog");
        assert_eq!(report.checks[1].status, CheckStatus::Failing);
        assert!(report.checks[1].message.as_deref().unwrap().contains("access denied"));

        health.ok("repository");
        assert_eq!(health.report().status, HealthStatus::Ok);
        health.failing("repository", "down");
        health.remove("repository");
        assert_eq!(health.report().status, HealthStatus::Ok);
    }

    #[test]
    fn durations_read_well_at_both_scales() {
        assert_eq!(seconds(Duration::from_millis(420)), "0.4 s");
        assert_eq!(seconds(Duration::from_secs(93)), "93 s");
    }

    #[test]
    fn a_silent_heartbeat_fails_and_a_new_beat_heals_it() {
        let health = Health::new();
        health.beat("scheduler", Duration::from_millis(100));
        let fresh = health.report();
        assert_eq!(fresh.status, HealthStatus::Ok);
        assert!(fresh.checks[0].age_seconds.unwrap() < 0.1);

        std::thread::sleep(Duration::from_millis(150));
        let stale = health.report();
        assert_eq!(stale.status, HealthStatus::Degraded);
        let message = stale.checks[0].message.as_deref().unwrap();
        assert!(message.starts_with("no heartbeat for "), "{message}");
        assert!(
            message.contains(", more than the 0.1 s allowed: it may be stuck"),
            "{message}"
        );
        assert!(stale.checks[0].age_seconds.unwrap() >= 0.15);

        health.beat("scheduler", Duration::from_millis(100));
        assert_eq!(health.report().status, HealthStatus::Ok);
    }
}
