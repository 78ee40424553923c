//! Synchronous, best-effort teardown shared by `Drop` and the orphan reaper.
//!
//! It stops a server by signalling its postmaster (SIGQUIT is what `pg_ctl stop -m immediate`
//! sends) instead of running a binary: the reaper reads directories that anyone may have written
//! under /tmp, and must never execute a program or signal a process that a marker merely names.
//! A pid is signalled only if that process's working directory is the data directory inside the
//! scratch directory (the postmaster chdirs there), so a stale or forged postmaster.pid cannot
//! make us kill an unrelated process.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a postmaster gets to exit after SIGQUIT before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(10);

/// Stop the postmaster serving `data_dir`, if any, and wait until it is gone.
pub(crate) fn stop_postmaster(data_dir: &Path) {
    let Some(pid) = verified_postmaster(data_dir) else {
        return;
    };
    if kill(pid, Signal::SIGQUIT).is_err() {
        return;
    }
    if wait_gone(pid, QUIT_GRACE) {
        return;
    }
    let _ = kill(pid, Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5));
}

/// Stop the server, then delete the directory. A directory that is already gone is a success.
pub(crate) fn destroy(scratch_dir: &Path, data_dir: &Path) -> std::io::Result<()> {
    stop_postmaster(data_dir);
    match std::fs::remove_dir_all(scratch_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The pid from `postmaster.pid`, only if that process really runs in this data directory.
fn verified_postmaster(data_dir: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 1 {
        return None;
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let expected = std::fs::canonicalize(data_dir).ok()?;
    (cwd == expected).then(|| Pid::from_raw(pid))
}

/// Polls until the process no longer exists. A zombie counts as gone: the postmaster was
/// daemonised by pg_ctl, so whoever reaps it is not us.
fn wait_gone(pid: Pid, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if matches!(kill(pid, None), Err(Errno::ESRCH)) || is_zombie(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}
