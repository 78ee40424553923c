use thiserror::Error;

/// Errors of the repository layer. Each message names the object involved and says what to do next.
#[derive(Debug, Error)]
pub enum RepoError {
    #[error(
        "no repository at {location}: {detail}; fix: run `lifeboat init {name}` to create it, or check the repository url"
    )]
    NotFound {
        location: String,
        name: String,
        detail: String,
    },
    #[error(
        "a repository already exists at {location} (id {id}); `init` never touches an existing repository; fix: use it as it is, or point `url` at an empty location"
    )]
    AlreadyExists { location: String, id: String },
    #[error(
        "{location} holds a repository of format version {found}, but this lifeboat reads only version {supported}; fix: use a lifeboat release that supports version {found}"
    )]
    UnsupportedVersion {
        location: String,
        found: u64,
        supported: u64,
    },
    #[error(
        "{object} is not a valid lifeboat object: {detail}; fix: run `lifeboat verify --all` to see every damaged object, and restore from another snapshot or repository copy"
    )]
    Corrupt { object: String, detail: String },
    #[error(
        "{object} is missing from the repository; fix: run `lifeboat verify --all` to list every affected snapshot, and restore from another snapshot or repository copy"
    )]
    Missing { object: String },
    #[error("snapshot {id} already exists in the repository; fix: retry the backup (a new id is chosen each time)")]
    SnapshotExists { id: String },
    #[error("snapshot prefix `{prefix}` is ambiguous: it matches {candidates}; fix: give more of the snapshot id")]
    Ambiguous { prefix: String, candidates: String },
    #[error(
        "storage error on {object}: {source}; fix: check that the repository is reachable and the credentials allow this operation"
    )]
    Storage {
        object: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "the repository is encrypted and {what} needs the age identity; fix: set `encryption.identity_file` (or identity_env) for this repository"
    )]
    IdentityRequired { what: String },
    #[error(
        "the repository is encrypted but no address key is available; fix: copy the address key that `lifeboat init` wrote into the state directory ({hint}), or configure the age identity so it can be unwrapped from the repository"
    )]
    AddressKeyRequired { hint: String },
    #[error("encryption setup is invalid: {detail}; fix: {fix}")]
    Encryption { detail: String, fix: String },
    #[error("reading the backup stream failed after {bytes} bytes: {detail}")]
    Source { bytes: u64, detail: String },
    #[error("writing the restored stream failed: {detail}")]
    Sink { detail: String },
    #[error("the repository is locked: {holders}; fix: {fix}")]
    Locked { holders: String, fix: String },
    #[error(
        "the repository lock {object} was lost: {detail}; nothing more was written; fix: check that the repository stays reachable and retry (objects already written are harmless: the next prune removes what no snapshot uses)"
    )]
    LockLost { object: String, detail: String },
    #[error(
        "deleting {object} was refused by storage: {detail}; fix: {action} needs the repository's deleting credential (the everyday credential is meant not to delete): run it with that credential"
    )]
    DeleteDenied {
        object: String,
        detail: String,
        /// What needed the delete, e.g. "pruning" or "undeleting a snapshot (removing its tombstone)".
        action: String,
    },
    #[error(
        "the sweep stopped after deleting {deleted} of {total} unreferenced chunks: {cause}; every snapshot is still whole (the chunks left are ones no snapshot uses); fix: correct the cause and run prune again to finish"
    )]
    SweepIncomplete {
        deleted: u64,
        total: u64,
        cause: Box<RepoError>,
    },
    #[error("internal task failed: {0}")]
    Task(String),
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

impl RepoError {
    /// True when storage refused because the credential may not do this (rather than a fault).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            RepoError::Storage { source, .. } => super::prune::is_permission_error(source),
            RepoError::DeleteDenied { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn storage(object: impl Into<String>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => RepoError::Missing { object: object.into() },
            source => RepoError::Storage {
                object: object.into(),
                source,
            },
        }
    }
}
