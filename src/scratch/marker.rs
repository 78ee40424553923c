//! The marker file that every scratch directory carries, so a later reaper can tell a live
//! cluster from one whose creator died without tearing it down (SIGKILL, OOM, power loss).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::ScratchError;

/// The marker file every scratch directory holds (JSON: creator pid, start time, port, …).
pub const MARKER_FILE: &str = "lifeboat-scratch.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// What lives in the directory; only "postgres" so far.
    pub kind: String,
    /// The process that created the directory and is responsible for removing it.
    pub pid: u32,
    /// That process's start time in clock ticks since boot (Linux `/proc/<pid>/stat`), so a
    /// recycled pid is not mistaken for the creator. `None` where /proc is unavailable.
    pub pid_start_ticks: Option<u64>,
    pub created_at: jiff::Timestamp,
    pub port: u16,
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Marker {
    pub fn for_this_process(port: u16, bin_dir: &Path, data_dir: &Path) -> Marker {
        let pid = std::process::id();
        Marker {
            kind: "postgres".into(),
            pid,
            pid_start_ticks: start_ticks(pid),
            created_at: jiff::Timestamp::now(),
            port,
            bin_dir: bin_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Written to a temporary name and renamed, so a concurrent reaper never reads half a file.
    pub fn write(&self, dir: &Path) -> Result<(), ScratchError> {
        let path = dir.join(MARKER_FILE);
        let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).expect("marker serialises");
        let fix = "check that the scratch parent directory is writable and not full";
        std::fs::write(&tmp, body).map_err(|e| ScratchError::io("write", &tmp, fix, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ScratchError::io("rename", &path, fix, e))
    }

    /// `Ok(None)` when `dir` has no marker (not ours, or still being created).
    pub fn read(dir: &Path) -> Result<Option<Marker>, ScratchError> {
        let path = dir.join(MARKER_FILE);
        let body = match std::fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ScratchError::io(
                    "read",
                    &path,
                    "check the permissions of the scratch parent directory",
                    e,
                ));
            }
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ScratchError::BadMarker {
                path,
                reason: e.to_string(),
            })
    }

    /// Whether the creating process still runs. EPERM means it exists but belongs to someone
    /// else: alive.
    pub fn creator_alive(&self) -> bool {
        let Ok(raw) = i32::try_from(self.pid) else {
            return false;
        };
        match kill(Pid::from_raw(raw), None) {
            Ok(()) | Err(Errno::EPERM) => {}
            Err(_) => return false,
        }
        match (self.pid_start_ticks, start_ticks(self.pid)) {
            (Some(recorded), Some(now)) => recorded == now,
            // Cannot compare: trust the pid alone rather than delete a live cluster.
            _ => true,
        }
    }
}

/// Field 22 of /proc/<pid>/stat. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last ')'.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After ')' the fields start at number 3 (state); starttime is number 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Scratch directories (those with a marker) directly under `parent`.
pub(crate) fn scratch_dirs(parent: &Path) -> Result<Vec<PathBuf>, ScratchError> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ScratchError::io(
                "list",
                parent,
                "check that the scratch parent directory exists and is readable",
                e,
            ));
        }
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(MARKER_FILE).is_file())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker::for_this_process(5555, Path::new("/bin"), &dir.path().join("data"));
        assert!(marker.pid_start_ticks.is_some(), "Linux exposes /proc");
        marker.write(dir.path()).unwrap();
        let back = Marker::read(dir.path()).unwrap().unwrap();
        assert_eq!(back.port, 5555);
        assert!(back.creator_alive());
    }

    #[test]
    fn recycled_pid_is_dead() {
        let mut marker = Marker::for_this_process(1, Path::new("/bin"), Path::new("/x"));
        marker.pid_start_ticks = marker.pid_start_ticks.map(|t| t + 1);
        assert!(!marker.creator_alive());
    }
}
