//! What the rules judge, as plain values: gathered from this host, the databases, the catalog
//! and the storage by [`super::gather`], judged by [`super::evaluate`]. Nothing here performs I/O,
//! so every rule can be exercised on values alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::evidence::{BucketEvidence, CallerIdentity, ProbeResult};
use super::local::RepoDirs;
use crate::catalog::DrillVerdict;
use crate::config::SecretRef;
use crate::repo::retention::RetentionPolicy;

/// Everything one analysis looks at.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now: jiff::Timestamp,
    /// `fate.untested_after`.
    pub untested_after: Duration,
    /// `fate.detect_within`.
    pub detect_within: Duration,
    /// Whether the immutability probe ran; `deletable` is judged only then.
    pub probed: bool,
    /// This host's name, for messages and for the "local host" provider.
    pub host_name: String,
    pub sources: Vec<SourceFacts>,
    pub repositories: Vec<RepositoryFacts>,
    pub drills: Vec<DrillFacts>,
    /// Drill history by source name; `Err`: the catalog could not be read, and why.
    pub drill_history: Result<BTreeMap<String, DrillHistory>, String>,
}

#[derive(Debug, Clone)]
pub struct SourceFacts {
    pub name: String,
    pub environment: String,
    /// The repository its backups are written to.
    pub repository: String,
    pub server: ServerAddress,
    pub data_dir: DataDir,
    /// The OS user the database runs as: the data directory's owner, else `postgres`. `Err`: why
    /// it is not known.
    pub db_user: Result<Account, String>,
    /// The secrets that reach the source: its password and its `cloud_identity` keys.
    pub credentials: Vec<Credential>,
    /// Who the source's `cloud_identity` is; `None` when the source has none.
    pub cloud_caller: Option<Result<CallerIdentity, String>>,
    pub retention: Option<RetentionPolicy>,
    /// The shortest gap between two runs of the source's backup schedule, if it has one.
    pub backup_interval: Option<Duration>,
}

impl SourceFacts {
    /// Whether the database runs on this host (`None`: could not be told).
    pub fn is_local(&self) -> Option<bool> {
        match &self.server.target {
            ServerTarget::Socket(_) | ServerTarget::ThisHost { .. } => Some(true),
            ServerTarget::Remote { .. } => Some(false),
            ServerTarget::Unresolved { .. } => None,
        }
    }
}

/// Where a database server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// For messages, without credentials: `db.internal:5432`, `socket /run/postgresql:5432`.
    pub shown: String,
    pub port: u16,
    pub target: ServerTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTarget {
    /// A Unix socket directory: always this host.
    Socket(PathBuf),
    /// A TCP address of this host; `via` says how that was told (loopback, this host's name, ...).
    ThisHost { via: String },
    /// Another host, with the addresses its name resolved to.
    Remote { host: String, addrs: Vec<IpAddr> },
    /// A name that did not resolve.
    Unresolved { host: String, why: String },
}

/// The source's data directory.
#[derive(Debug, Clone)]
pub enum DataDir {
    /// `how`: "asked the server" or "`sources.NAME.data_dir`".
    Known {
        path: PathBuf,
        how: String,
        place: Result<PathPlace, String>,
    },
    /// The database is on this host (or may be) but its data directory could not be found.
    Unknown { why: String },
    /// The database runs on another host and no `data_dir` is configured: nothing here shares
    /// its disks.
    Remote,
}

/// Where a path lives: its filesystem and mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPlace {
    /// The path as configured or reported, made absolute.
    pub path: PathBuf,
    /// The path with symlinks resolved, or its nearest existing ancestor when it does not exist.
    pub resolved: PathBuf,
    pub exists: bool,
    /// `major:minor` of the filesystem (stat `st_dev`), as /proc/self/mountinfo writes it.
    pub device: String,
    /// Owner of `resolved`.
    pub owner_uid: u32,
    pub mount: Option<Mount>,
}

/// One line of /proc/self/mountinfo, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// `major:minor` of the mounted filesystem.
    pub device: String,
    pub fs_type: String,
    /// What is mounted: a block device (`/dev/vda1`), a server export (`nas:/backups`), or a name
    /// (`tmpfs`, `overlay`).
    pub source: String,
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {}, device {})",
            self.point.display(),
            self.fs_type,
            self.source,
            self.device
        )
    }
}

/// An OS user and its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Every group, the primary one included.
    pub groups: Vec<u32>,
}

/// A secret reference and, when it resolved, a salted digest of its value (the salt is random per
/// analysis, so digests mean nothing outside it). The value itself is never kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The config key naming it, e.g. `repositories.offsite.secret_access_key`.
    pub key: String,
    pub reference: SecretRef,
    pub digest: Option<[u8; 32]>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("key", &self.key)
            .field("reference", &self.reference)
            .field("digest", &self.digest.map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RepositoryFacts {
    pub name: String,
    pub storage: StorageFacts,
    /// The repository's access keys.
    pub credentials: Vec<Credential>,
    /// The decryption identity, if the config names one.
    pub identity: Option<IdentityFacts>,
    /// Snapshot ids by source, from the manifests; `Err`: could not be listed, and why.
    pub snapshots: Result<BTreeMap<String, BTreeSet<String>>, String>,
}

#[derive(Debug, Clone)]
pub enum StorageFacts {
    File {
        path: PathBuf,
        place: Result<PathPlace, String>,
        dirs: Result<RepoDirs, String>,
    },
    S3 {
        bucket: String,
        /// `None`: AWS.
        endpoint: Option<String>,
        /// As configured; the evidence may know better.
        region: Option<String>,
        evidence: BucketEvidence,
        /// Present when the probe ran.
        probe: Option<ProbeResult>,
    },
    /// gs:// and az://: not inspected.
    Other { scheme: String },
}

#[derive(Debug, Clone)]
pub struct IdentityFacts {
    pub reference: SecretRef,
    /// For an `identity_file`: where it lives (`Err` when it cannot be looked at).
    pub place: Option<Result<PathPlace, String>>,
}

#[derive(Debug, Clone)]
pub struct DrillFacts {
    pub name: String,
    pub file: PathBuf,
    pub source: String,
    pub scratch: ScratchFacts,
}

#[derive(Debug, Clone)]
pub enum ScratchFacts {
    /// A throwaway cluster on a socket in a temp dir: no route to anything.
    Ephemeral,
    /// `Err`: the DSN could not be read or parsed, and why.
    Server(Result<ServerAddress, String>),
}

/// A source's drill runs, as the catalog knows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrillHistory {
    pub runs: u64,
    /// When the newest passing run started.
    pub last_pass: Option<jiff::Timestamp>,
    /// The newest run: when it started and its verdict.
    pub last: Option<(jiff::Timestamp, DrillVerdict)>,
}
