//! Which OS user runs the scratch server, and building child commands for it.
//!
//! initdb, pg_ctl and postgres refuse to run as root, so a root process hands them to the
//! `postgres` OS user (the one the distribution's package creates). An unprivileged process runs
//! them as itself.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use super::ScratchError;

/// The user the distribution packages run PostgreSQL as.
const SERVER_OS_USER: &str = "postgres";

/// An OS identity to switch to in child processes; `None` elsewhere means "stay as we are".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl OsUser {
    /// The identity for server processes: `postgres` when we are root, else nobody to switch to.
    pub fn for_server() -> Result<Option<OsUser>, ScratchError> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let err = |reason: String| ScratchError::OsUser {
            user: SERVER_OS_USER.into(),
            reason,
        };
        let user = User::from_name(SERVER_OS_USER)
            .map_err(|e| err(format!("lookup failed: {e}")))?
            .ok_or_else(|| err("no such user".into()))?;
        if user.uid.is_root() {
            return Err(err("it is uid 0".into()));
        }
        Ok(Some(OsUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    pub fn chown(&self, path: &Path) -> Result<(), ScratchError> {
        nix::unistd::chown(path, Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid))).map_err(|e| {
            ScratchError::io(
                "chown",
                path,
                "run as root on a filesystem that supports ownership, or run unprivileged",
                e.into(),
            )
        })
    }

    /// Fail early, with a clear message, if the server user cannot reach `dir` (initdb would fail
    /// later with a confusing "permission denied" otherwise).
    pub fn check_searchable(&self, dir: &Path) -> Result<(), ScratchError> {
        for ancestor in dir.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(ancestor) else {
                continue;
            };
            let mode = meta.mode();
            let ok = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return Err(ScratchError::NotSearchable {
                    path: ancestor.to_path_buf(),
                    user: self.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A command for `program`, run as `user` (if any), in `cwd`, with every `PG*` variable removed so
/// that the caller's libpq environment (PGHOST, PGPORT, PGDATA, …) cannot redirect it.
pub(crate) fn command(program: &Path, user: Option<&OsUser>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    if let Some(user) = user {
        // std drops supplementary groups too when switching uid as root.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}
