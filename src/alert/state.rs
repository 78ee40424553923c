//! Open alerts: the de-duplication decisions and their persistence in a JSON file.
//!
//! The file is rewritten whole after every change (temp file in the same directory, fsync,
//! rename), so a crash leaves either the old or the new state, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{Alert, AlertKind, Severity};

const STATE_VERSION: u32 = 1;

/// An alert that was raised and not yet resolved, as kept in the state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    pub key: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub summary: String,
    pub source: Option<String>,
    pub drill: Option<String>,
    pub details: Map<String, Value>,
    /// When the alert was first raised (since it was last resolved).
    pub first_seen: Timestamp,
    /// When it was last raised, sent or not.
    pub last_seen: Timestamp,
    /// When it was last sent (first time, change or reminder).
    pub last_sent: Timestamp,
    /// Every sink it was sent to while open: the resolve goes to all of them.
    pub sinks: BTreeSet<String>,
}

/// Why an alert is being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendReason {
    /// It was not open.
    New,
    /// It was open with another severity or summary.
    Changed,
    /// It was open and unchanged, and the reminder interval has passed since it was last sent.
    Reminder,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    open: BTreeMap<String, OpenAlert>,
}

/// The open alerts and where they are kept.
#[derive(Debug)]
pub(crate) struct AlertState {
    path: PathBuf,
    open: BTreeMap<String, OpenAlert>,
}

impl AlertState {
    /// Loads `path`; a missing file is an empty state. A file that cannot be read as state is
    /// moved aside (`<name>.unreadable-<unix seconds>`) and logged, and alerting starts empty:
    /// better to page again than to stop paging.
    pub(crate) fn load(path: PathBuf) -> AlertState {
        let open = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(file) if file.version == STATE_VERSION => file.open,
                Ok(file) => {
                    set_aside(
                        &path,
                        &format!("it has version {}, this build reads {STATE_VERSION}", file.version),
                    );
                    BTreeMap::new()
                }
                Err(e) => {
                    set_aside(&path, &format!("it is not valid alert state JSON ({e})"));
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "cannot read the alert state file; starting with no open alerts \
                     (fix: make it readable by the user running lifeboat)"
                );
                BTreeMap::new()
            }
        };
        AlertState { path, open }
    }

    pub(crate) fn open_alerts(&self) -> impl Iterator<Item = &OpenAlert> {
        self.open.values()
    }

    /// Records a raise and says whether to send it (`None`: unchanged and within the reminder
    /// interval). `sinks` are the sinks the alert's routes select now; when sending, they are
    /// added to the sinks the resolve will go to.
    pub(crate) fn raise(
        &mut self,
        alert: &Alert,
        sinks: &BTreeSet<String>,
        now: Timestamp,
        reminder: Duration,
    ) -> (Option<SendReason>, OpenAlert) {
        let key = alert.key();
        let reason = match self.open.get(&key) {
            None => Some(SendReason::New),
            Some(open) if open.severity != alert.severity() || open.summary != alert.summary() => {
                Some(SendReason::Changed)
            }
            Some(open) if elapsed(open.last_sent, now) >= reminder => Some(SendReason::Reminder),
            Some(_) => None,
        };
        let entry = self.open.entry(key.clone()).or_insert_with(|| OpenAlert {
            key,
            kind: alert.kind(),
            severity: alert.severity(),
            summary: String::new(),
            source: None,
            drill: None,
            details: Map::new(),
            first_seen: now,
            last_seen: now,
            last_sent: now,
            sinks: BTreeSet::new(),
        });
        entry.kind = alert.kind();
        entry.severity = alert.severity();
        alert.summary().clone_into(&mut entry.summary);
        entry.source = alert.source().map(str::to_owned);
        entry.drill = alert.drill().map(str::to_owned);
        entry.details = alert.details().clone();
        entry.last_seen = now;
        if reason.is_some() {
            entry.last_sent = now;
            entry.sinks.extend(sinks.iter().cloned());
        }
        (reason, entry.clone())
    }

    /// Removes the alert; `None` if it was not open.
    pub(crate) fn resolve(&mut self, key: &str) -> Option<OpenAlert> {
        self.open.remove(key)
    }

    /// Writes the state file atomically. Errors are logged, not returned: alerting goes on
    /// from memory, and the next change tries again.
    pub(crate) fn persist(&self) {
        if let Err(e) = self.write() {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the alert state file; open alerts may be sent again after a restart \
                 (fix: make its directory writable by the user running lifeboat)"
            );
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let file = StateFile {
            version: STATE_VERSION,
            open: self.open.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".alert-state")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        temp.write_all(&json)?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let span: SignedDuration = now.duration_since(since);
    Duration::try_from(span).unwrap_or(Duration::ZERO)
}

fn set_aside(path: &Path, why: &str) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".unreadable-{}", Timestamp::now().as_second()));
    let aside = PathBuf::from(aside);
    let moved = std::fs::rename(path, &aside);
    tracing::error!(
        path = %path.display(),
        kept_as = %aside.display(),
        moved = moved.is_ok(),
        "the alert state file cannot be used: {why}; starting with no open alerts, so alerts still \
         firing will be sent again and older ones will not be resolved (fix: resolve them by hand \
         in the receivers; the old file is kept for reference)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn sinks(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn alert(severity: Severity, summary: &str) -> Alert {
        Alert::new(AlertKind::BackupFailed, severity, summary).with_source("orders")
    }

    #[test]
    fn dedup_change_and_reminder() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AlertState::load(dir.path().join("state.json"));
        let hour = Duration::from_secs(3600);
        let crit = alert(Severity::Critical, "failed");
        let (reason, open) = state.raise(&crit, &sinks(&["a"]), at(0), hour);
        assert_eq!(reason, Some(SendReason::New));
        assert_eq!(open.first_seen, at(0));
        assert_eq!(state.raise(&crit, &sinks(&["a"]), at(60), hour).0, None);
        // Details do not count as a change; severity and summary do.
        let detailed = crit.clone().with_detail("attempt", 2);
        assert_eq!(state.raise(&detailed, &sinks(&["a"]), at(120), hour).0, None);
        let warn = alert(Severity::Warning, "failed");
        let (reason, open) = state.raise(&warn, &sinks(&["b"]), at(180), hour);
        assert_eq!(reason, Some(SendReason::Changed));
        assert_eq!(open.sinks, sinks(&["a", "b"]));
        assert_eq!((open.first_seen, open.last_sent), (at(0), at(180)));
        assert_eq!(state.raise(&warn, &sinks(&["b"]), at(180 + 3599), hour).0, None);
        assert_eq!(
            state.raise(&warn, &sinks(&["b"]), at(180 + 3600), hour).0,
            Some(SendReason::Reminder)
        );
        assert_eq!(state.resolve("backup_failed:orders").unwrap().last_seen, at(180 + 3600));
        assert_eq!(state.resolve("backup_failed:orders"), None);
    }

    #[test]
    fn state_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut state = AlertState::load(path.clone());
        state.raise(
            &alert(Severity::Critical, "failed"),
            &sinks(&["a"]),
            at(0),
            Duration::from_secs(60),
        );
        state.persist();
        let reloaded = AlertState::load(path);
        let open: Vec<&OpenAlert> = reloaded.open_alerts().collect();
        assert_eq!(open, state.open_alerts().collect::<Vec<_>>());
        assert_eq!(open[0].key, "backup_failed:orders");
    }

    #[test]
    fn an_unreadable_state_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let state = AlertState::load(path.clone());
        assert_eq!(state.open_alerts().count(), 0);
        assert!(!path.exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(kept.len(), 1);
        assert!(
            kept[0].to_string_lossy().starts_with("state.json.unreadable-"),
            "{kept:?}"
        );
    }
}
