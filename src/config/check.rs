//! The checks that need the machine rather than the file: resolving every secret, and
//! looking at the paths that must exist.
//!
//! The validator records one [`Check`] for every secret reference and checked path it could
//! read, with the position of the key, whether or not the rest of the file is valid. A
//! valid [`Config`](super::Config) keeps them for [`Config::check`](super::Config::check);
//! [`check_file`](super::check_file) runs them on a broken file too, so `check-config`
//! reports an unset variable in the same run as, say, an undefined repository.

use std::path::{Path, PathBuf};

use super::error::{Position, Problem, sort_problems};
use super::model::CatalogConfig;
use super::secret::SecretRef;

/// One thing to check, and where in the file it was named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    /// Dotted path of the key, e.g. `sources.orders.password`.
    pub key: String,
    /// Where the key's value is; `None` for defaults not written in the file.
    pub at: Option<Position>,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A secret that must resolve.
    Secret(SecretRef),
    /// The catalog URL: must resolve to a `postgres://` URL.
    CatalogUrl(SecretRef),
    /// An age identity: must resolve and hold age secret keys. With the repository's
    /// recipients (`None` when they are themselves invalid, so no match can be judged), one
    /// of its keys must belong to them.
    Identity(SecretRef, Option<Vec<String>>),
    /// `pg_bin_dir`: must hold `pg_dump`.
    PgBinDir(PathBuf),
    /// `state_dir`: created if missing, but must not be something other than a directory.
    StateDir(PathBuf),
}

/// Runs every check; problems point at `file` and the check's position, in file order.
pub(crate) fn run(file: &Path, checks: &[Check]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for check in checks {
        let mut found = |p: Problem| {
            problems.push(Problem {
                file: Some(file.to_path_buf()),
                position: check.at,
                ..p
            })
        };
        match &check.target {
            Target::Secret(secret) => {
                if let Err(e) = secret.resolve() {
                    e.into_problems().into_iter().for_each(found);
                }
            }
            Target::CatalogUrl(url) => {
                let catalog = CatalogConfig { url: url.clone() };
                if let Err(e) = catalog.resolve_url() {
                    e.into_problems().into_iter().for_each(found);
                }
            }
            Target::Identity(secret, recipients) => match secret.resolve() {
                Err(e) => e.into_problems().into_iter().for_each(found),
                Ok(value) => {
                    if let Some(p) = check_identity(value.expose(), secret, recipients.as_deref()) {
                        found(p);
                    }
                }
            },
            Target::PgBinDir(dir) => {
                if !dir.join("pg_dump").is_file() {
                    found(Problem::detached(
                        format!("pg_bin_dir {} has no `pg_dump`", dir.display()),
                        "point pg_bin_dir at the directory holding pg_dump and pg_restore \
                         (e.g. /usr/lib/postgresql/17/bin), or remove it to use PATH",
                    ));
                }
            }
            Target::StateDir(dir) => {
                if dir.exists() && !dir.is_dir() {
                    found(Problem::detached(
                        format!("state_dir {} exists and is not a directory", dir.display()),
                        "point state_dir at a directory (it is created if missing)",
                    ));
                }
            }
        }
    }
    sort_problems(&mut problems);
    problems
}

/// An identity must parse, and should decrypt what we encrypt: its public key must be one
/// of the recipients, or restores would fail exactly when they matter. `recipients: None`
/// skips that second part.
fn check_identity(value: &str, from: &SecretRef, recipients: Option<&[String]>) -> Option<Problem> {
    use std::str::FromStr;
    // age identity files may hold comments (`# created: ...`) and several keys.
    let keys: Vec<&str> = value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut publics = Vec::new();
    for key in &keys {
        match age::x25519::Identity::from_str(key) {
            Ok(identity) => publics.push(identity.to_public().to_string()),
            Err(_) => {
                return Some(Problem::detached(
                    format!("{} does not hold an age secret key", from.describe()),
                    "put the output of `age-keygen` there (a line starting with `AGE-SECRET-KEY-1`)",
                ));
            }
        }
    }
    if publics.is_empty() {
        return Some(Problem::detached(
            format!("{} holds no age secret key", from.describe()),
            "put the output of `age-keygen` there (a line starting with `AGE-SECRET-KEY-1`)",
        ));
    }
    if let Some(recipients) = recipients
        && !publics.iter().any(|p| recipients.contains(p))
    {
        return Some(Problem::detached(
            format!(
                "the identity in {} matches none of the repository's recipients, so it \
                 could not decrypt these backups",
                from.describe()
            ),
            "add its public key (`age-keygen -y KEYFILE`) to `recipients`, or use the identity \
             that belongs to one of them",
        ));
    }
    None
}
