//! Engines: one module per database kind. Every database-specific fact lives in `engine/<kind>`;
//! everything above speaks through [`Engine`].
//!
//! An engine drives the database's own tools as child processes (pg_dump, pg_restore) and talks to the
//! server for the facts a backup must record (versions, identity, the consistent point, row counts).
//! Physical backups with WAL archiving, and the MySQL and SQLite engines, fit behind the same trait:
//! a backup is "a stream plus facts", a restore is "a stream into a target".

pub mod postgres;

use std::io::Read;
use std::path::PathBuf;

use async_trait::async_trait;
use secrecy::SecretString;
use url::Url;

use crate::repo::{BackupFacts, Fingerprint};

/// How to reach one database. The password travels beside the DSN, never inside it.
#[derive(Clone)]
pub struct Endpoint {
    pub dsn: Url,
    pub password: Option<SecretString>,
    /// Where the database's client tools live; `None` searches PATH.
    pub bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("dsn", &redact(&self.dsn))
            .field("password", &"[redacted]")
            .finish()
    }
}

/// A DSN fit for messages: any password that slipped into it is masked.
pub fn redact(dsn: &Url) -> String {
    let mut u = dsn.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Whether a DSN carries a password: in the user-info part (`user:pw@host`), or as a parameter
/// whose name ends in `password` (`password`, and `sslpassword`, a client key's passphrase), in
/// the URL's query or libpq's `key=value` form. Checked on the raw text too, so that a DSN the URL
/// parser rejects is still caught. The config refuses such a source DSN, and a restore such a
/// target: a driver logs a parameter it does not know, value and all.
pub fn dsn_has_password(text: &str) -> bool {
    if text.to_ascii_lowercase().contains("password=") {
        return true;
    }
    if let Ok(url) = Url::parse(text)
        && (url.password().is_some_and(|p| !p.is_empty())
            || url
                .query_pairs()
                .any(|(k, _)| k.to_ascii_lowercase().ends_with("password")))
    {
        return true;
    }
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let head = rest.split('?').next().unwrap_or(rest);
    match head.rfind('@') {
        Some(at) => head[..at].split_once(':').is_some_and(|(_, pw)| !pw.is_empty()),
        None => false,
    }
}

/// The identity of a database, used to refuse restoring over the source itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseIdentity {
    pub server_version: String,
    pub system_identifier: Option<String>,
    pub database: String,
}

/// What a restore target holds before anything is written to it.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub identity: DatabaseIdentity,
    /// User relations (tables, views, sequences...) already present, up to a few names.
    pub existing_objects: u64,
    pub examples: Vec<String>,
}

impl TargetState {
    pub fn is_empty(&self) -> bool {
        self.existing_objects == 0
    }
}

/// A backup in progress: read `stream` to its end, then call `finish`.
pub struct RunningBackup {
    pub stream: Box<dyn Read + Send>,
    /// What the stream is, recorded in the manifest so restore knows which tool reads it.
    pub format: String,
    pub method: String,
    pub handle: Box<dyn BackupHandle>,
}

#[async_trait]
pub trait BackupHandle: Send {
    /// Waits for the producer to exit and returns the facts of the backup. Fails if the producer
    /// failed: a stream whose producer failed must never be committed.
    async fn finish(self: Box<Self>) -> Result<BackupFacts, EngineError>;
    /// Stops the producer (the stream could not be stored).
    async fn abort(self: Box<Self>);
}

/// How restore feeds the archive to the database's tool.
#[derive(Debug, Clone)]
pub enum RestoreInput {
    /// A complete, already verified archive in a local file or memory file (a path this process's
    /// children can open): allows parallel restore.
    File(PathBuf),
    /// Streamed on the tool's stdin as it is fetched; restored in one transaction so that a failure
    /// midway leaves nothing behind.
    Stdin,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub jobs: u32,
    /// Skip ownership statements (the target lacks the source's roles).
    pub no_owner: bool,
    /// Replace what the target holds: drop each object the archive has before recreating it. Only
    /// an approved request sets this (see `crate::control`).
    pub replace: bool,
}

/// An archive still being fetched into a local file while a restore already reads it (see
/// [`Engine::restore_growing`]).
pub struct GrowingArchive {
    /// A path this process's children can open: the database's tool reads the archive from it.
    pub path: PathBuf,
    /// A handle to read it through.
    pub file: std::fs::File,
    /// How much of it is fetched and proven so far.
    pub proven: tokio::sync::watch::Receiver<Proven>,
}

/// How far a [`GrowingArchive`] is fetched and proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proven {
    /// Its first this many bytes are proven; more are coming.
    Upto(u64),
    /// All of it, this many bytes, is proven.
    Whole(u64),
    /// Fetching it failed: nothing more comes, and nothing of it may be committed.
    Failed,
}

/// A restore in progress. For `RestoreInput::Stdin`, write the archive to `stdin`, drop it, then `finish`.
pub struct RunningRestore {
    pub stdin: Option<tokio::process::ChildStdin>,
    pub handle: Box<dyn RestoreHandle>,
}

#[async_trait]
pub trait RestoreHandle: Send {
    async fn finish(self: Box<Self>) -> Result<(), EngineError>;
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Connects and reports who the server is.
    async fn identity(&self) -> Result<DatabaseIdentity, EngineError>;
    /// Starts a consistent logical backup of the database.
    async fn start_backup(&self) -> Result<RunningBackup, EngineError>;
    /// Reports what a restore target already holds.
    async fn target_state(&self) -> Result<TargetState, EngineError>;
    /// Starts restoring an archive of `format` into this endpoint's database.
    async fn start_restore(
        &self,
        format: &str,
        input: RestoreInput,
        opts: &RestoreOptions,
    ) -> Result<RunningRestore, EngineError>;
    /// Restores an archive of `format` while it is still being fetched, where this engine can:
    /// reads only proven bytes and commits no data before the whole archive is proven, so a damaged
    /// chunk found late rolls every table's data back. Returns the rows the server stored in each
    /// table it loaded; `Ok(None)`, the target untouched, where it cannot (the caller then waits for
    /// the whole archive and calls [`Engine::start_restore`]).
    async fn restore_growing(
        &self,
        _format: &str,
        _archive: GrowingArchive,
        _opts: &RestoreOptions,
    ) -> Result<Option<Vec<crate::repo::TableRows>>, EngineError> {
        Ok(None)
    }
    /// Row counts per table, now.
    async fn fingerprint(&self) -> Result<Fingerprint, EngineError>;
    /// Marks a database whose restore failed midway so nobody mistakes it for a good copy.
    async fn mark_incomplete(&self, note: &str) -> Result<(), EngineError>;

    // --- What recovery drills ask of a restored copy.

    /// The first column of the first row of an operator's query, as text (`None` for SQL NULL).
    async fn query_text(&self, sql: &str) -> Result<Option<String>, EngineError>;
    /// An operator's query that returns one timestamp (e.g. `select max(created_at) from t`).
    async fn query_timestamp(&self, sql: &str) -> Result<Option<jiff::Timestamp>, EngineError>;
    /// Structural index checks where the server offers them.
    async fn amcheck(&self) -> Result<AmcheckOutcome, EngineError>;
    /// Deletes one row of `table`, so a negative control can prove the checks notice lost data.
    async fn delete_one_row(&self, schema: &str, table: &str) -> Result<(), EngineError>;
    /// Creates an empty database on this server and returns an endpoint for it.
    async fn create_database(&self, name: &str) -> Result<Endpoint, EngineError>;
    /// Drops a database on this server (forcing out its sessions).
    async fn drop_database(&self, name: &str) -> Result<(), EngineError>;
    /// The databases on this server whose name starts with `prefix`.
    async fn databases_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EngineError>;
    /// The same, blocking and best effort, for `Drop` paths (a drill cancelled by a signal) where
    /// nothing can be awaited.
    fn drop_database_blocking(&self, name: &str);
}

/// What `amcheck` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmcheckOutcome {
    /// Every B-tree index was checked and found sound.
    Sound { indexes: u64 },
    /// An index failed its check.
    Corrupt { detail: String },
    /// The check cannot run here (e.g. the extension is not installed).
    Unavailable { reason: String },
}

/// Whether two DSNs of a kind name the same database on the same server, however they are spelled.
pub fn same_database(kind: &str, a: &Url, b: &Url) -> bool {
    match kind {
        "postgres" | "postgresql" => postgres::dsn::same_database(a, b),
        _ => a == b,
    }
}

/// Whether two DSNs of a kind reach the same server.
pub fn same_server(kind: &str, a: &Url, b: &Url) -> bool {
    match kind {
        "postgres" | "postgresql" => postgres::dsn::same_server(a, b),
        _ => a.host_str() == b.host_str() && a.port() == b.port(),
    }
}

/// Builds the engine for a source kind.
pub fn for_kind(kind: &str, endpoint: Endpoint) -> Result<Box<dyn Engine>, EngineError> {
    match kind {
        "postgres" | "postgresql" => Ok(Box::new(postgres::Postgres::new(endpoint))),
        other => Err(EngineError::Unsupported {
            kind: other.to_string(),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to {dsn}: {detail}; fix: {fix}")]
    Connect { dsn: String, detail: String, fix: String },
    #[error("query on {dsn} failed: {detail}; fix: check the role's privileges and the server's log")]
    Query { dsn: String, detail: String },
    #[error("cannot run {tool}: {detail}; fix: install the database's client tools or set `pg_bin_dir` for the source")]
    ToolMissing { tool: String, detail: String },
    #[error(
        "{tool} failed (exit {status}): {stderr}; fix: act on {tool}'s own message above; the server's log has more for the same moment"
    )]
    ToolFailed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error(
        "stream format `{format}` cannot be restored by the {engine} engine; fix: restore it with the engine that made it"
    )]
    WrongFormat { engine: String, format: String },
    #[error(
        "the role in {dsn} cannot read {tables}; fix: GRANT SELECT on them (or grant pg_read_all_data) to the backup role"
    )]
    Privileges { dsn: String, tables: String },
    #[error(
        "check query on {dsn} failed: {detail}; fix: run the query by hand against a restored copy and correct it in the drill file"
    )]
    Check { dsn: String, detail: String },
    #[error("database kind `{kind}` is not supported yet; fix: use kind: postgres")]
    Unsupported { kind: String },
    #[error("the archive stopped arriving (its fetch failed); nothing of its data was committed")]
    ArchiveFailed,
    #[error(
        "the archive's layout is not what pg_dump writes ({detail}); fix: restore with --jobs 1, which lets pg_restore read it alone"
    )]
    ArchiveLayout { detail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_dsns() {
        assert!(dsn_has_password("postgres://u:pw@h/db"));
        assert!(dsn_has_password("postgres://u:p@ss@h/db"));
        assert!(dsn_has_password("postgres://u@h/db?password=x"));
        assert!(dsn_has_password("postgres://u@h/db?sslpassword=x"));
        assert!(dsn_has_password("postgres://u@h/db?pass%77ord=x"));
        assert!(dsn_has_password("host=h password=x dbname=d"));
        assert!(!dsn_has_password("postgres://u@h:5432/db"));
        assert!(!dsn_has_password("postgresql:///db?host=/run/postgresql"));
    }
}
