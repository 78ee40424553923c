//! Running PostgreSQL's client tools.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, ExitStatus};

use secrecy::{ExposeSecret, SecretString};

use crate::engine::EngineError;

/// The tool's path: inside `bin_dir` when configured, else found on PATH.
pub fn path(bin_dir: Option<&Path>, tool: &str) -> PathBuf {
    match bin_dir {
        Some(dir) => dir.join(tool),
        None => PathBuf::from(tool),
    }
}

/// `pg_dump --version`, e.g. "pg_dump (PostgreSQL) 15.20".
pub fn version(bin_dir: Option<&Path>, tool: &str) -> Result<String, EngineError> {
    let out = Command::new(path(bin_dir, tool))
        .arg("--version")
        .output()
        .map_err(|e| EngineError::ToolMissing {
            tool: tool.into(),
            detail: e.to_string(),
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A child process that is killed (and reaped) if dropped before [`KillOnDrop::into_inner`]: a
/// cancelled backup must not leave its `pg_dump` running, holding locks on the source.
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    pub fn new(child: std::process::Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The child, no longer killed on drop.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            // Reaping right after SIGKILL takes no time; it keeps zombies away.
            let _ = child.wait();
        }
    }
}

/// Kills a child's whole process group (the child started with `process_group(0)`, so the group id
/// is its pid) when dropped armed: a tool that forks workers leaves none behind when cancelled.
pub struct GroupGuard(Option<nix::unistd::Pid>);

impl GroupGuard {
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid.map(|p| nix::unistd::Pid::from_raw(p as i32)))
    }

    /// The tool finished on its own: nothing to kill.
    pub fn disarm(&mut self) {
        self.0 = None;
    }

    pub fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a child's stderr on its own thread so a chatty tool can never block on a full pipe.
pub fn collect_stderr(mut stderr: ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        tail(&String::from_utf8_lossy(&buf), 2000)
    })
}

/// The last `max` bytes of a message, on a character boundary.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// Removes the password from text that came from a tool, in case a tool ever echoes it.
pub fn scrub(text: &str, password: Option<&SecretString>) -> String {
    match password {
        Some(pw) if !pw.expose_secret().is_empty() => text.replace(pw.expose_secret(), "***"),
        _ => text.to_string(),
    }
}

pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown".into(),
    }
}

/// Grows a pipe's kernel buffer from 64 KiB to 1 MiB: a dump streams gigabytes through it, and a larger
/// buffer means far fewer wake-ups of the dump tool and of the reader. Best effort (capped by
/// /proc/sys/fs/pipe-max-size).
pub fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    let _ = nix::fcntl::fcntl(pipe.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}
