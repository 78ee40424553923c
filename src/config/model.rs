//! The validated, typed config that the rest of Lifeboat uses.
//!
//! A value of these types has passed validation: names are valid, references resolve,
//! URLs have a supported scheme and no embedded credentials. Secrets are held as
//! [`SecretRef`]s and read on demand (see `secret.rs` for why).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::check::{self, Check};
use super::error::Problem;
use super::fate::{CloudIdentityConfig, FateConfig};
use super::secret::{Secret, SecretRef};
use super::service::{AlertsConfigSpec, DaemonConfig, SourcePings, SourceSchedules};

#[derive(Clone)]
pub struct Config {
    /// The file this config came from, as given (used in messages).
    pub path: PathBuf,
    /// Where the daemon keeps its local state; absolute.
    pub state_dir: PathBuf,
    /// Where the drill files (`*.yaml`, `*.yml`) are; absolute. Default: `drills` beside
    /// the config file.
    pub drills_dir: PathBuf,
    /// `None`: the catalog is SQLite at `state_dir/catalog.db`.
    pub catalog: Option<CatalogConfig>,
    pub repositories: BTreeMap<String, RepositoryConfig>,
    pub sources: BTreeMap<String, SourceConfig>,
    /// `daemon:`, with defaults when absent.
    pub daemon: DaemonConfig,
    /// `alerts:`; empty when absent.
    pub alerts: AlertsConfigSpec,
    /// `fate:`, with defaults when absent.
    pub fate: FateConfig,
    /// `control:`, with defaults when absent.
    pub control: super::ControlConfig,
    /// Every secret and path to check, with the position of the key that names it, so
    /// `check` can point at the key that names a missing secret.
    pub(super) checks: Vec<Check>,
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

#[derive(Clone, Debug, PartialEq)]
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
    /// When the daemon backs up, verifies and prunes this source.
    pub schedules: SourceSchedules,
    /// What `prune` keeps; `None`: the source is never pruned.
    pub retention: Option<crate::repo::retention::RetentionPolicy>,
    pub pings: SourcePings,
    /// Other repositories that hold copies of this source's snapshots (`lifeboat copy`).
    pub copy_to: Vec<String>,
    /// The data directory as seen from this host, for the shared-fate analysis when the server
    /// cannot be asked (`show data_directory` needs superuser or `pg_read_all_settings`).
    pub data_dir: Option<PathBuf>,
    /// A credential of the source's own infrastructure, compared with the repository's.
    pub cloud_identity: Option<CloudIdentityConfig>,
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
    /// rather than stopping at the first. An empty list means the config is ready to use on
    /// this machine. Checks what the file names (recorded at load); `lifeboat check-config`
    /// uses [`super::check_file`], which runs the same checks on an invalid file too.
    pub fn check(&self) -> Vec<Problem> {
        check::run(&self.path, &self.checks)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("state_dir", &self.state_dir)
            .field("drills_dir", &self.drills_dir)
            .field("catalog", &self.catalog)
            .field("repositories", &self.repositories)
            .field("sources", &self.sources)
            .field("daemon", &self.daemon)
            .field("alerts", &self.alerts)
            .field("fate", &self.fate)
            .finish_non_exhaustive()
    }
}
