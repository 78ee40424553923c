//! The validated, typed config that the rest of Lifeboat uses.
//!
//! A value of these types has passed validation: names are valid, references resolve,
//! URLs have a supported scheme and no embedded credentials. Secrets are held as
//! [`SecretRef`]s and read on demand (see `secret.rs` for why).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::error::{Position, Problem, sort_problems};
use super::secret::{Secret, SecretRef};

#[derive(Clone)]
pub struct Config {
    /// The file this config came from, as given (used in messages).
    pub path: PathBuf,
    /// Where the daemon keeps its local state; absolute.
    pub state_dir: PathBuf,
    /// `None`: the catalog is SQLite at `state_dir/catalog.db`.
    pub catalog: Option<CatalogConfig>,
    pub repositories: BTreeMap<String, RepositoryConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    /// Positions of values in the file, so `check` can point at the key that names a
    /// missing secret. Keyed by dotted path, e.g. `sources.orders.password`.
    pub(super) positions: BTreeMap<String, Position>,
}

/// A PostgreSQL catalog shared by several daemons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Holds a `postgres://` URL (which may include a password, hence a secret).
    pub url: SecretRef,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryConfig {
    pub name: String,
    /// `file:///abs/path`, `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
    pub url: url::Url,
    /// For S3-compatible servers (`s3://` only).
    pub endpoint: Option<url::Url>,
    pub region: Option<String>,
    /// Set together with `secret_access_key` or not at all.
    pub access_key_id: Option<SecretRef>,
    pub secret_access_key: Option<SecretRef>,
    pub encryption: Option<EncryptionConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1...`), from `recipients` and `recipients_file`; never empty.
    pub recipients: Vec<String>,
    /// The age secret key; needed only to restore or `verify --read-data`.
    pub identity: Option<SecretRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    /// Never contains a password (refused at load).
    pub dsn: url::Url,
    pub password: Option<SecretRef>,
    /// Lowercase `[a-z0-9-]+`, e.g. `production`.
    pub environment: String,
    /// A key of [`Config::repositories`].
    pub repository: String,
    pub pg_bin_dir: Option<PathBuf>,
}

/// Database kinds the config knows. Only `Postgres` passes validation today; the others are
/// named so that their configs get "not supported yet" rather than "unknown kind".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Postgres,
    Mysql,
    Mariadb,
    Sqlite,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Postgres,
        SourceKind::Mysql,
        SourceKind::Mariadb,
        SourceKind::Sqlite,
    ];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
            SourceKind::Mariadb => "mariadb",
            SourceKind::Sqlite => "sqlite",
        }
    }

    pub(super) fn parse(text: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CatalogConfig {
    /// Reads the catalog URL and checks that it is a PostgreSQL URL. The URL is never
    /// echoed in errors: it usually contains a password.
    pub fn resolve_url(&self) -> Result<Secret, super::ConfigError> {
        let secret = self.url.resolve()?;
        let ok = match url::Url::parse(secret.expose()) {
            Ok(url) => matches!(url.scheme(), "postgres" | "postgresql"),
            Err(_) => false,
        };
        if ok {
            Ok(secret)
        } else {
            Err(super::ConfigError::one(Problem::detached(
                format!("the catalog URL in {} is not a `postgres://` URL", self.url.describe()),
                "put a URL like `postgres://lifeboat@db.internal:5432/lifeboat` there, or \
                 remove `catalog:` to use SQLite in state_dir",
            )))
        }
    }
}

impl Config {
    /// The repository a source writes to. Validation guarantees it exists.
    pub fn repository_of(&self, source: &SourceConfig) -> &RepositoryConfig {
        &self.repositories[&source.repository]
    }

    /// Resolves every secret and checks the paths that must exist, reporting every problem
    /// rather than stopping at the first. Backs `lifeboat check-config`; an empty list
    /// means the config is ready to use on this machine.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut secret = |key: String, secret: &SecretRef| -> Option<Secret> {
            match secret.resolve() {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.extend(e.into_problems().into_iter().map(|p| self.locate(&key, p)));
                    None
                }
            }
        };
        let mut found = Vec::new();

        if let Some(catalog) = &self.catalog
            && let Err(e) = catalog.resolve_url()
        {
            found.extend(e.into_problems().into_iter().map(|p| self.locate("catalog.url", p)));
        }
        for (name, repo) in &self.repositories {
            for (field, value) in [
                ("access_key_id", &repo.access_key_id),
                ("secret_access_key", &repo.secret_access_key),
            ] {
                if let Some(r) = value {
                    secret(format!("repositories.{name}.{field}"), r);
                }
            }
            if let Some(enc) = &repo.encryption
                && let Some(identity) = &enc.identity
            {
                let key = format!("repositories.{name}.encryption.identity");
                if let Some(value) = secret(key.clone(), identity)
                    && let Some(p) = check_identity(value.expose(), identity, &enc.recipients)
                {
                    found.push(self.locate(&key, p));
                }
            }
        }
        for (name, source) in &self.sources {
            if let Some(r) = &source.password {
                secret(format!("sources.{name}.password"), r);
            }
            if let Some(dir) = &source.pg_bin_dir {
                let pg_dump = dir.join("pg_dump");
                if !pg_dump.is_file() {
                    found.push(self.locate(
                        &format!("sources.{name}.pg_bin_dir"),
                        Problem::detached(
                            format!("pg_bin_dir {} has no `pg_dump`", dir.display()),
                            "point pg_bin_dir at the directory holding pg_dump and pg_restore \
                             (e.g. /usr/lib/postgresql/17/bin), or remove it to use PATH",
                        ),
                    ));
                }
            }
        }
        if self.state_dir.exists() && !self.state_dir.is_dir() {
            found.push(self.locate(
                "state_dir",
                Problem::detached(
                    format!("state_dir {} exists and is not a directory", self.state_dir.display()),
                    "point state_dir at a directory (it is created if missing)",
                ),
            ));
        }
        problems.extend(found);
        sort_problems(&mut problems);
        problems
    }

    /// Attaches this config's file and the position of `key` to a problem.
    fn locate(&self, key: &str, mut problem: Problem) -> Problem {
        problem.file = Some(self.path.clone());
        problem.position = self.positions.get(key).copied();
        problem
    }
}

/// An identity must parse, and should decrypt what we encrypt: its public key must be one
/// of the recipients, or restores would fail exactly when they matter.
fn check_identity(value: &str, from: &SecretRef, recipients: &[String]) -> Option<Problem> {
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
    if !publics.iter().any(|p| recipients.contains(p)) {
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("state_dir", &self.state_dir)
            .field("catalog", &self.catalog)
            .field("repositories", &self.repositories)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}
