//! Whether an OS user can write to (and so delete from) a repository directory, computed from
//! permission bits, owners and group membership: no process has to switch users to find out, and
//! the computation is testable on values. POSIX ACLs and capabilities are not considered.

use std::path::PathBuf;

use crate::fate::inputs::Account;

/// One directory's owner and mode, as stat reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The low 12 bits of `st_mode` (permissions, setuid/setgid, sticky).
    pub mode: u32,
}

/// A repository directory and the directories around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoDirs {
    /// From `/` down to the repository's parent (or, when the repository does not exist yet, down
    /// to its nearest existing ancestor).
    pub ancestors: Vec<DirEntry>,
    /// `None` when the repository directory does not exist yet.
    pub repo: Option<DirEntry>,
    /// Directories inside the repository (`chunks/aa`, `snapshots/orders`, ...), parents before
    /// their children.
    pub inside: Vec<DirEntry>,
}

/// The answer, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The user can delete backups; `how` says through which directory and why.
    Writes { how: String },
    /// It cannot; `why` names what stops it.
    Denied { why: String },
}

const STICKY: u32 = 0o1000;

/// The three permission bits (rwx) that apply to `account` on `entry`.
fn bits(account: &Account, entry: &DirEntry) -> u32 {
    if account.uid == entry.uid {
        (entry.mode >> 6) & 0o7
    } else if account.groups.contains(&entry.gid) || account.gid == entry.gid {
        (entry.mode >> 3) & 0o7
    } else {
        entry.mode & 0o7
    }
}

fn describe(account: &Account, entry: &DirEntry) -> String {
    let class = if account.uid == entry.uid {
        "as its owner".to_owned()
    } else if account.groups.contains(&entry.gid) || account.gid == entry.gid {
        format!("through group {}", entry.gid)
    } else {
        "as any other user".to_owned()
    };
    format!(
        "{} (mode {:04o}, owner uid {}, group {}) {class}",
        entry.path.display(),
        entry.mode & 0o7777,
        entry.uid,
        entry.gid
    )
}

/// Whether `account` can delete what the repository holds: it must be able to enter every
/// directory on the way, and then write (or, as owner, chmod) the repository directory or one
/// inside it. A sticky directory lets others delete only their own entries, which are not backups.
pub fn can_write(account: &Account, dirs: &RepoDirs) -> Access {
    if account.uid == 0 {
        return Access::Writes {
            how: format!("{} is root", account.name),
        };
    }
    for entry in &dirs.ancestors {
        if bits(account, entry) & 0o1 == 0 {
            return Access::Denied {
                why: format!("{} cannot enter {}", account.name, describe(account, entry)),
            };
        }
    }
    let Some(repo) = &dirs.repo else {
        // Not created yet: whoever can write where it will be created can replace it later.
        return match dirs.ancestors.last() {
            Some(parent) if writes(account, parent) => Access::Writes {
                how: format!(
                    "the repository does not exist yet and {} can write {}, where it will be created",
                    account.name,
                    describe(account, parent)
                ),
            },
            _ => Access::Denied {
                why: format!("{} cannot write where the repository will be created", account.name),
            },
        };
    };
    // Directories the account can reach, starting with the repository itself.
    let mut reachable: Vec<&DirEntry> = Vec::new();
    for entry in std::iter::once(repo).chain(&dirs.inside) {
        let parent_reachable = entry.path == repo.path
            || entry
                .path
                .parent()
                .is_some_and(|p| reachable.iter().any(|r| r.path == p && bits(account, r) & 0o1 != 0));
        if !parent_reachable {
            continue;
        }
        if account.uid == entry.uid {
            return Access::Writes {
                how: format!(
                    "{} owns {}, so it can change its mode and delete what it holds",
                    account.name,
                    entry.path.display()
                ),
            };
        }
        if writes(account, entry) {
            return Access::Writes {
                how: format!("{} can write {}", account.name, describe(account, entry)),
            };
        }
        reachable.push(entry);
    }
    if bits(account, repo) & 0o1 == 0 {
        return Access::Denied {
            why: format!("{} cannot enter {}", account.name, describe(account, repo)),
        };
    }
    Access::Denied {
        why: format!(
            "{} can neither write nor chmod {} or any directory inside it",
            account.name,
            repo.path.display()
        ),
    }
}

/// Write and search on a directory, without a sticky bit that would limit deletion to its own
/// entries.
fn writes(account: &Account, entry: &DirEntry) -> bool {
    let b = bits(account, entry);
    b & 0o3 == 0o3 && (entry.mode & STICKY == 0 || account.uid == entry.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, groups: &[u32]) -> Account {
        Account {
            name: "postgres".into(),
            uid,
            gid: groups[0],
            groups: groups.to_vec(),
        }
    }

    fn dir(path: &str, uid: u32, gid: u32, mode: u32) -> DirEntry {
        DirEntry {
            path: path.into(),
            uid,
            gid,
            mode,
        }
    }

    fn dirs(repo: DirEntry, inside: Vec<DirEntry>) -> RepoDirs {
        RepoDirs {
            ancestors: vec![dir("/", 0, 0, 0o755), dir("/srv", 0, 0, 0o755)],
            repo: Some(repo),
            inside,
        }
    }

    #[test]
    fn owner_group_and_other_bits() {
        let pg = user(101, &[104, 103]);
        let mine = dirs(
            dir("/srv/repo", 0, 0, 0o755),
            vec![dir("/srv/repo/chunks", 101, 0, 0o555)],
        );
        assert!(matches!(can_write(&pg, &mine), Access::Writes { how } if how.contains("owns /srv/repo/chunks")));

        let group = dirs(dir("/srv/repo", 0, 103, 0o775), vec![]);
        assert!(matches!(can_write(&pg, &group), Access::Writes { how } if how.contains("through group 103")));

        let other = dirs(dir("/srv/repo", 0, 0, 0o757), vec![]);
        assert!(matches!(can_write(&pg, &other), Access::Writes { .. }));

        let closed = dirs(
            dir("/srv/repo", 0, 0, 0o755),
            vec![dir("/srv/repo/chunks", 0, 104, 0o755)],
        );
        assert!(matches!(can_write(&pg, &closed), Access::Denied { .. }));
    }

    #[test]
    fn an_unsearchable_ancestor_or_a_sticky_bit_stops_it() {
        let pg = user(101, &[104]);
        let mut blocked = dirs(dir("/srv/repo", 0, 0, 0o777), vec![]);
        blocked.ancestors.push(dir("/srv/private", 0, 0, 0o700));
        assert!(
            matches!(can_write(&pg, &blocked), Access::Denied { why } if why.contains("cannot enter /srv/private"))
        );

        let sticky = dirs(dir("/srv/repo", 0, 0, 0o1777), vec![]);
        assert!(matches!(can_write(&pg, &sticky), Access::Denied { .. }));

        // A writable directory below one it cannot enter is out of reach.
        let hidden = dirs(
            dir("/srv/repo", 0, 0, 0o750),
            vec![dir("/srv/repo/chunks", 0, 0, 0o777)],
        );
        assert!(matches!(can_write(&pg, &hidden), Access::Denied { .. }));
    }

    #[test]
    fn root_always_and_a_missing_repository_by_its_parent() {
        assert!(matches!(
            can_write(&user(0, &[0]), &dirs(dir("/srv/repo", 5, 5, 0o700), vec![])),
            Access::Writes { .. }
        ));
        let pg = user(101, &[104]);
        let missing = RepoDirs {
            ancestors: vec![dir("/", 0, 0, 0o755), dir("/srv", 0, 104, 0o775)],
            repo: None,
            inside: vec![],
        };
        assert!(matches!(can_write(&pg, &missing), Access::Writes { how } if how.contains("does not exist yet")));
    }
}
