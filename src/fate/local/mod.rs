//! Evidence from this host: which filesystem and mount a path is on, who owns it, which OS user
//! can write where, and where a DSN leads.

mod access;
pub mod address;
pub mod mountinfo;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use access::{Access, DirEntry, RepoDirs, can_write};

use super::inputs::{Account, Mount, PathPlace};

/// At most this many directories inside a repository are looked at (`chunks/` alone has 256).
const MAX_INSIDE_DIRS: usize = 2048;

/// Where `path` lives. A path that does not exist (a repository not created yet) is placed by its
/// nearest existing ancestor, which is where it will be created.
pub fn place(path: &Path, mounts: &[Mount]) -> Result<PathPlace, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut probe = absolute.as_path();
    let (resolved, meta) = loop {
        match std::fs::canonicalize(probe).and_then(|c| std::fs::metadata(&c).map(|m| (c, m))) {
            Ok(found) => break found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match probe.parent() {
                Some(parent) => probe = parent,
                None => return Err(format!("{}: no part of the path exists", path.display())),
            },
            Err(e) => return Err(format!("cannot look at {}: {e}", probe.display())),
        }
    };
    let device = device_name(meta.dev());
    let mount = mountinfo::mount_of(mounts, &resolved, &device).cloned();
    Ok(PathPlace {
        exists: probe == absolute,
        path: absolute,
        resolved,
        device,
        owner_uid: meta.uid(),
        mount,
    })
}

/// `major:minor` of a `st_dev`, in the Linux encoding that /proc/self/mountinfo also uses.
fn device_name(dev: u64) -> String {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    format!("{major}:{minor}")
}

/// Whether two places are on one filesystem, or on one block device (two filesystems of one disk);
/// `Some(why)` in words.
pub fn same_device(a: &PathPlace, b: &PathPlace) -> Option<String> {
    if a.device == b.device {
        return Some(match &a.mount {
            Some(m) => format!("the same filesystem, mounted at {m}"),
            None => format!("the same filesystem (device {})", a.device),
        });
    }
    match (&a.mount, &b.mount) {
        (Some(x), Some(y)) if x.source.starts_with("/dev/") && x.source == y.source => Some(format!(
            "the same block device {} (filesystems mounted at {} and {})",
            x.source,
            x.point.display(),
            y.point.display()
        )),
        _ => None,
    }
}

/// Whether `inner` is `outer` or below it (both with symlinks resolved).
pub fn is_inside(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// The OS user with this uid, with its groups.
pub fn account_by_uid(uid: u32) -> Result<Account, String> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .map_err(|e| format!("looking up uid {uid}: {e}"))?;
    match user {
        Some(user) => Ok(account(user)),
        // An owner without a passwd entry (a container's uid): no supplementary groups known.
        None => Ok(Account {
            name: format!("uid {uid}"),
            uid,
            gid: u32::MAX,
            groups: Vec::new(),
        }),
    }
}

/// The OS user of this name, with its groups.
pub fn account_by_name(name: &str) -> Result<Account, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => Ok(account(user)),
        Ok(None) => Err(format!("there is no OS user `{name}` on this host")),
        Err(e) => Err(format!("looking up OS user `{name}`: {e}")),
    }
}

fn account(user: nix::unistd::User) -> Account {
    let groups = std::ffi::CString::new(user.name.clone())
        .ok()
        .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid.as_raw()]);
    Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    }
}

/// The directories along and inside a repository path, for [`can_write`].
pub fn repo_dirs(path: &Path) -> Result<RepoDirs, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (resolved, exists) = match std::fs::canonicalize(&absolute) {
        Ok(p) => (p, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (absolute, false),
        Err(e) => return Err(format!("cannot look at {}: {e}", absolute.display())),
    };
    let mut ancestors = Vec::new();
    let mut prefix = PathBuf::new();
    let components: Vec<_> = resolved.components().collect();
    let last = components.len().saturating_sub(1);
    for (i, c) in components.iter().enumerate() {
        prefix.push(c);
        if exists && i == last {
            break;
        }
        match entry(&prefix) {
            Ok(e) => ancestors.push(e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(format!("cannot look at {}: {e}", prefix.display())),
        }
    }
    if !exists {
        return Ok(RepoDirs {
            ancestors,
            repo: None,
            inside: Vec::new(),
        });
    }
    let repo = entry(&resolved).map_err(|e| format!("cannot look at {}: {e}", resolved.display()))?;
    let mut inside = Vec::new();
    let mut queue = vec![resolved.clone()];
    // Breadth first, two levels down: `chunks/aa`, `snapshots/orders`, `evidence/orders`.
    for _depth in 0..2 {
        let mut next = Vec::new();
        for dir in queue {
            let Ok(read) = std::fs::read_dir(&dir) else { continue };
            let mut children: Vec<PathBuf> = read
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            children.sort();
            for child in children {
                if inside.len() >= MAX_INSIDE_DIRS {
                    break;
                }
                if let Ok(e) = entry(&child) {
                    inside.push(e);
                    next.push(child);
                }
            }
        }
        queue = next;
    }
    Ok(RepoDirs {
        ancestors,
        repo: Some(repo),
        inside,
    })
}

fn entry(path: &Path) -> std::io::Result<DirEntry> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(DirEntry {
        path: path.to_path_buf(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
    })
}
