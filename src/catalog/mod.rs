//! The catalog: a database of history (snapshots taken, runs of backups, restores and verifies,
//! runs of recovery drills).
//!
//! The catalog is history and cache; the repository is the truth. Snapshots can always be
//! recreated from the repository (`lifeboat catalog rebuild`, through
//! [`Catalog::replace_repository_snapshots`]), so losing the catalog loses nothing that matters.
//!
//! Two backends behind one trait: SQLite (the default, a file in the state_dir) and PostgreSQL
//! (for several daemons sharing one history). sqlx's `Any` driver cannot carry our types, hence two
//! small implementations with the same schema, migrated from `migrations/sqlite` and
//! `migrations/postgres`. See `rows.rs` for how values are stored.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod control;
mod error;
mod postgres;
mod rows;
mod sqlite;

pub use control::{AuditRow, ChainHash, GENESIS, StoredApproval, StoredToken};
pub use error::{CatalogError, MAX_CANDIDATES, redact_url};

/// Shortest prefix [`Catalog::snapshot`] accepts: shorter ones match too much to be meant.
pub const MIN_PREFIX: usize = 4;

/// Where the catalog lives.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogTarget {
    /// A SQLite file; it and its parent directory are created if missing.
    Sqlite(PathBuf),
    /// A `postgres://` URL. It may contain a password: [`fmt::Display`] and [`fmt::Debug`] redact
    /// it, and no error message contains it.
    Postgres(String),
}

impl fmt::Display for CatalogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogTarget::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            CatalogTarget::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

// Hand-written so that `{:?}` in a log line cannot leak the password.
impl fmt::Debug for CatalogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogTarget::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            CatalogTarget::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

/// Opens the catalog and brings its schema up to date (migrations are idempotent and, on
/// PostgreSQL, serialised between daemons by an advisory lock).
pub async fn open(target: &CatalogTarget) -> Result<Box<dyn Catalog>, CatalogError> {
    Ok(match target {
        CatalogTarget::Sqlite(path) => Box::new(sqlite::SqliteCatalog::open(path).await?),
        CatalogTarget::Postgres(url) => Box::new(postgres::PgCatalog::open(url).await?),
    })
}

#[async_trait::async_trait]
pub trait Catalog: Send + Sync {
    /// Insert or replace (keyed by repository + id).
    async fn record_snapshot(&self, s: &SnapshotRecord) -> Result<(), CatalogError>;

    /// Newest first (by finished_at, then id, then repository).
    async fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotRecord>, CatalogError>;

    /// By full id or unique prefix (at least [`MIN_PREFIX`] characters, case-sensitive). An
    /// exact id wins over longer ids it prefixes; an ambiguous prefix is an error naming the
    /// candidates.
    /// A snapshot copied to several repositories has one id and several records: that is not
    /// ambiguous, and the record of the first repository by name is returned (use
    /// [`Catalog::snapshots`] with a repository filter to pick another).
    async fn snapshot(&self, id_or_prefix: &str) -> Result<Option<SnapshotRecord>, CatalogError>;

    /// For `catalog rebuild`: atomically replace every snapshot of `repository` with `snapshots`
    /// (one transaction). Every record must name `repository`; ids must be distinct.
    async fn replace_repository_snapshots(
        &self,
        repository: &str,
        snapshots: &[SnapshotRecord],
    ) -> Result<(), CatalogError>;

    /// For prune: removes the records of these snapshots of `repository` (whose manifests prune has
    /// deleted), in one transaction. Records of the same ids in other repositories stay; ids not in
    /// the catalog are ignored. Returns how many records were removed.
    async fn delete_snapshots(&self, repository: &str, ids: &[String]) -> Result<u64, CatalogError>;

    /// Every scheduled job the daemons have seen, by name.
    async fn jobs(&self) -> Result<Vec<JobState>, CatalogError>;

    /// Claims the occurrence `claim.due` of a job for `claim.owner` until `claim.lease_until`, in one
    /// atomic statement. Succeeds (true) only when no daemon has taken care of this occurrence or a
    /// later one yet, and no run of the job holds a lease that is still valid at `claim.now`: so each
    /// occurrence runs once across every daemon sharing the catalog, and a job never overlaps itself.
    async fn claim_job(&self, claim: &JobClaim) -> Result<bool, CatalogError>;

    /// Records that occurrences up to `due` were taken care of without running (reported missed).
    /// True when this call moved the job forward: the caller is the one daemon that reports them.
    async fn skip_job(&self, job: &str, due: jiff::Timestamp) -> Result<bool, CatalogError>;

    /// Extends a running job's lease; false when `owner` no longer holds it (it expired and was
    /// taken over), in which case the run should stop.
    async fn renew_job(&self, job: &str, owner: &str, lease_until: jiff::Timestamp) -> Result<bool, CatalogError>;

    /// Ends `owner`'s run of `job`, releasing the lease and recording the outcome.
    async fn finish_job(&self, done: &JobDone) -> Result<(), CatalogError>;

    /// History of runs (backups, restores, verifies), successful or not. With `id: None` a new run
    /// is inserted; with `id: Some(n)` run `n` is overwritten (an error if it does not exist).
    /// Returns the run's id.
    async fn record_run(&self, r: &RunRecord) -> Result<i64, CatalogError>;

    /// Newest first (by finished_at, then id), at most `limit`.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, CatalogError>;

    /// History of recovery drills, keyed by the run id the drill gives itself. Inserts, or replaces
    /// the whole record when the id is already there, so that `catalog rebuild` can re-import a
    /// run's evidence without duplicating it.
    async fn record_drill_run(&self, r: &DrillRunRecord) -> Result<(), CatalogError>;

    /// Newest first (by started_at, then id), at most `limit`.
    async fn drill_runs(&self, filter: &DrillRunFilter) -> Result<Vec<DrillRunRecord>, CatalogError>;

    // The control plane (`crate::control` owns the documents).

    /// Stores a new token; its id must be new.
    async fn insert_token(&self, t: &StoredToken) -> Result<(), CatalogError>;
    async fn token(&self, id: &str) -> Result<Option<StoredToken>, CatalogError>;
    /// By id.
    async fn tokens(&self) -> Result<Vec<StoredToken>, CatalogError>;
    /// Replaces a token's document (e.g. to revoke it); false when there is no such token.
    async fn update_token(&self, id: &str, body: &str) -> Result<bool, CatalogError>;

    /// Stores a new approval request; its id must be new.
    async fn insert_approval(&self, a: &StoredApproval) -> Result<(), CatalogError>;
    async fn approval(&self, id: &str) -> Result<Option<StoredApproval>, CatalogError>;
    /// Newest first, optionally only those in `state`.
    async fn approvals(&self, state: Option<&str>) -> Result<Vec<StoredApproval>, CatalogError>;
    /// Writes `a` (state, version, body) only if the stored request is still at `expected_version`:
    /// a compare-and-set, so that of two processes deciding or executing the same request at once
    /// exactly one succeeds. False when another got there first.
    async fn update_approval(&self, a: &StoredApproval, expected_version: i64) -> Result<bool, CatalogError>;

    /// Appends an entry to the audit log in one transaction that holds the log alone: the entry gets
    /// the next sequence number, the previous entry's hash, and `chain(prev_hash, seq, body)` as its
    /// own hash. Nothing updates or deletes entries.
    async fn append_audit(&self, at: jiff::Timestamp, body: &str, chain: &ChainHash) -> Result<AuditRow, CatalogError>;
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>, CatalogError>;

    /// Sets (`Some`) or removes (`None`) a setting changed through the control plane.
    async fn set_setting(&self, key: &str, body: Option<&str>) -> Result<(), CatalogError>;
    /// Every setting, by key.
    async fn settings(&self) -> Result<Vec<(String, String)>, CatalogError>;

    /// Closes the connections now (rather than whenever the value is dropped), so that SQLite can
    /// checkpoint its WAL and PostgreSQL sees the sessions end. Later calls fail.
    async fn close(&self);
}

/// One snapshot in one repository, as recorded after a backup or found by `catalog rebuild`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub source: String,
    pub repository: String,
    /// The engine kind, e.g. "postgres".
    pub engine: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    /// Logical size of the backup stream.
    pub bytes_read: u64,
    /// New bytes written to the repository by this backup (compressed).
    pub bytes_stored: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    pub stream_sha256: String,
    /// E.g. an LSN.
    pub consistent_point: Option<String>,
    pub server_version: Option<String>,
    pub tool_version: Option<String>,
    /// Fingerprint totals.
    pub tables: u64,
    pub rows: u64,
}

/// A scheduled job as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// `<kind>:<target>`, e.g. `backup:orders`.
    pub job: String,
    /// The newest occurrence a daemon has taken care of.
    pub last_due: Option<jiff::Timestamp>,
    /// The daemon running the job now, if any.
    pub owner: Option<String>,
    pub lease_expires: Option<jiff::Timestamp>,
    pub last_started: Option<jiff::Timestamp>,
    pub last_finished: Option<jiff::Timestamp>,
    /// `ok`, `failed` or `cancelled`.
    pub last_outcome: Option<String>,
    pub last_detail: Option<String>,
}

/// See [`Catalog::claim_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobClaim {
    pub job: String,
    pub due: jiff::Timestamp,
    pub owner: String,
    pub now: jiff::Timestamp,
    pub lease_until: jiff::Timestamp,
}

/// See [`Catalog::finish_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDone {
    pub job: String,
    pub owner: String,
    pub finished_at: jiff::Timestamp,
    pub outcome: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFilter {
    pub source: Option<String>,
    pub repository: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Backup,
    Restore,
    Verify,
    Prune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
}

/// One run of a job, successful or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Assigned by the catalog; `None` when recording a new run.
    pub id: Option<i64>,
    pub kind: RunKind,
    pub source: Option<String>,
    pub repository: Option<String>,
    pub snapshot_id: Option<String>,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: RunStatus,
    /// A human-readable summary or the error.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    pub kind: Option<RunKind>,
    pub source: Option<String>,
    pub limit: Option<u32>,
}

/// How a drill run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillVerdict {
    /// Restored, every check passed, RTO and RPO within the SLA.
    Pass,
    /// Restored, but a check failed.
    Fail,
    /// Checks passed, but the measured RTO or RPO exceeded the SLA.
    SlaBreach,
    /// The drill could not be carried out (no snapshot selected, restore failed, ...).
    Error,
}

/// One run of a recovery drill: a snapshot restored into scratch, checked, and its RTO and RPO
/// measured against the SLA. Durations are seconds; they must be finite and not negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRunRecord {
    /// The run id, e.g. "20261124T030000Z-1a2b3c4d"; unique, never empty.
    pub id: String,
    pub drill: String,
    pub source: String,
    pub repository: String,
    /// `None` when snapshot selection failed.
    pub snapshot_id: Option<String>,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub verdict: DrillVerdict,
    /// Measured RTO; `None` if not measured.
    pub rto_seconds: Option<f64>,
    /// Achieved RPO; `None` if not measured.
    pub rpo_seconds: Option<f64>,
    pub sla_rto_seconds: Option<f64>,
    pub sla_rpo_seconds: Option<f64>,
    /// Why the run failed or erred, short.
    pub detail: Option<String>,
    /// The full result document (phases, checks). Stored as JSON text on SQLite and as JSONB on
    /// PostgreSQL, which keeps the meaning but not the spelling: key order is not kept, and a
    /// whole-number float from 1e16 up to `u64::MAX` comes back as an integer (serde_json writes
    /// "1e16", JSONB returns 10000000000000000). A string or key containing U+0000 cannot be
    /// stored (JSONB refuses it), on either backend.
    pub evidence: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRunFilter {
    pub drill: Option<String>,
    pub source: Option<String>,
    pub limit: Option<u32>,
}

// The stored spellings are the serde ones, so JSON output and raw SQL agree.
impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Restore => "restore",
            RunKind::Verify => "verify",
            RunKind::Prune => "prune",
        }
    }
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        }
    }
}

impl DrillVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillVerdict::Pass => "pass",
            DrillVerdict::Fail => "fail",
            DrillVerdict::SlaBreach => "sla-breach",
            DrillVerdict::Error => "error",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DrillVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "backup" => Ok(RunKind::Backup),
            "restore" => Ok(RunKind::Restore),
            "verify" => Ok(RunKind::Verify),
            "prune" => Ok(RunKind::Prune),
            _ => Err(format!("unknown run kind {s:?}; expected backup, restore or verify")),
        }
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(RunStatus::Ok),
            "failed" => Ok(RunStatus::Failed),
            _ => Err(format!("unknown run status {s:?}; expected ok or failed")),
        }
    }
}

impl FromStr for DrillVerdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pass" => Ok(DrillVerdict::Pass),
            "fail" => Ok(DrillVerdict::Fail),
            "sla-breach" => Ok(DrillVerdict::SlaBreach),
            "error" => Ok(DrillVerdict::Error),
            _ => Err(format!(
                "unknown drill verdict {s:?}; expected pass, fail, sla-breach or error"
            )),
        }
    }
}
