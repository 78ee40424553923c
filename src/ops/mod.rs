//! Operations: the verbs that combine an engine, a repository and the catalog. The CLI calls them
//! today; the daemon and the API call the same functions.

mod backup;
mod copy;
pub mod interrupt;
mod prune;
mod rebuild;
mod restore;
mod staging;

pub use backup::{BackupReport, backup};
pub use copy::{CopyFailure, CopyOutcome, CopyReport, CopyRequest, SnapshotCopy, copy};
pub use prune::{
    Deletions, EvidenceOrigin, ForgottenSnapshot, HOW_TO_SET_A_POLICY, KeptSnapshot, LastDrilled, PruneReport,
    PruneRequest, SourcePrune, TombstonedSnapshot, UndeleteReport, UndeleteRequest, delete_snapshot, prune, tombstoned,
    undelete,
};
pub use rebuild::{rebuild_catalog, snapshot_record};
pub use restore::{RestoreReport, RestoreRequest, lock_snapshot, restore, unlock};
pub use staging::{StagedArchive, Staging, stage};

use crate::engine::EngineError;
use crate::repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A safety rule said no. Nothing was written.
    #[error("refused: {reason}; fix: {fix}")]
    Refused { reason: String, fix: String },
    /// The restored data does not match what the backup recorded.
    #[error(
        "restored data does not match the backup: {detail}; fix: do not use the target database; run `lifeboat verify --read-data {snapshot}` and restore another snapshot"
    )]
    Mismatch { snapshot: String, detail: String },
    #[error("local I/O failed on {path}: {detail}; fix: check free space and permissions there, or pass --work-dir")]
    Io { path: String, detail: String },
    /// Stopped on request (see [`interrupt`]); `detail` says what the target was left holding.
    #[error("the restore was stopped by {why}: {detail}")]
    Interrupted { why: &'static str, detail: String },
}
