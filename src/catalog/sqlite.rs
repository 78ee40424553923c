//! The SQLite catalog: one file in the state_dir, the default.

use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::error::Scrubber;
use super::rows::{
    self, DrillRunParams, DrillRunRow, JobRow, RunParams, RunRow, SnapshotParams, SnapshotRow, drill_run_columns,
    job_columns, run_columns, snapshot_columns, ts_to_db,
};
use super::{
    Catalog, CatalogError, DrillRunFilter, DrillRunRecord, JobClaim, JobDone, JobState, MAX_CANDIDATES, RunFilter,
    RunRecord, SnapshotFilter, SnapshotRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A few connections: readers run alongside the one writer WAL allows; more would only queue.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for another process's write lock (CLI and daemon share the file)
/// before SQLite gives up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than BUSY_TIMEOUT, so that a lock wait surfaces as SQLite's clearer error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct SqliteCatalog {
    pool: SqlitePool,
    /// The path, for messages.
    target: String,
    /// Nothing to hide in SQLite messages; kept so that both backends share the error helpers.
    scrub: Scrubber,
}

impl SqliteCatalog {
    pub(crate) async fn open(path: &Path) -> Result<Self, CatalogError> {
        let target = path.display().to_string();
        let open_err = |detail: String| CatalogError::OpenSqlite {
            path: target.clone(),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers never block the writer, and a crash never corrupts the file.
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; a power cut may lose the
            // last transactions, which is acceptable for history the repository can rebuild.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is locked"
        // at once, without its busy handler, when another process is creating the same catalog at
        // that moment: retry for a while instead of failing the command.
        let mut attempt = 0u32;
        let pool = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options.clone())
                .await;
            match opened {
                Ok(pool) => break pool,
                Err(e) if attempt < 100 && e.to_string().contains("database is locked") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 + u64::from(attempt) * 5)).await;
                }
                Err(e) => return Err(open_err(e.to_string())),
            }
        };
        let catalog = SqliteCatalog {
            pool,
            target,
            scrub: Scrubber::default(),
        };
        catalog.migrate().await?;
        Ok(catalog)
    }

    /// Runs the migrations inside `BEGIN IMMEDIATE`: SQLite has no advisory lock, and two processes
    /// creating the same fresh catalog would otherwise both try to apply migration 1 (sqlx nests
    /// its own per-migration transactions as savepoints inside this one).
    async fn migrate(&self) -> Result<(), CatalogError> {
        let q = |e: sqlx::Error| CatalogError::query("migration", &self.target, &self.scrub, &e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(q)?;
        MIGRATOR
            .run(&mut *tx)
            .await
            .map_err(|e| CatalogError::migrate(&self.target, &self.scrub, &e))?;
        tx.commit().await.map_err(q)
    }

    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> CatalogError + '_ {
        move |e| CatalogError::query(op, &self.target, &self.scrub, &e)
    }

    async fn by_exact_id(&self, id: &str) -> Result<Option<SnapshotRecord>, CatalogError> {
        let row: Option<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM snapshots WHERE id = ?1 ORDER BY repository LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("snapshot lookup"))?;
        row.map(|r| r.into_record(&self.target)).transpose()
    }
}

impl SqliteCatalog {
    super::control::control_methods!();

    /// SQLite numbers parameters `?N` where the shared SQL writes PostgreSQL's `$N`.
    fn sql(&self, text: &'static str) -> sqlx::AssertSqlSafe<String> {
        // Safe: the text is a literal from control_methods!, never user input.
        sqlx::AssertSqlSafe(text.replace('$', "?"))
    }

    /// `BEGIN IMMEDIATE` takes the write lock at once, so two processes appending to the audit log
    /// cannot both read the same last entry.
    async fn begin_audit(&self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, CatalogError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.err("append_audit"))
    }
}

/// Binds a snapshot's values in `snapshot_columns!()` order.
macro_rules! bind_snapshot {
    ($query:expr, $p:expr) => {
        $query
            .bind($p.repository)
            .bind($p.id)
            .bind($p.source)
            .bind($p.engine)
            .bind($p.started_at_ns)
            .bind($p.finished_at_ns)
            .bind($p.bytes_read)
            .bind($p.bytes_stored)
            .bind($p.chunks)
            .bind($p.new_chunks)
            .bind($p.stream_sha256)
            .bind($p.consistent_point)
            .bind($p.server_version)
            .bind($p.tool_version)
            .bind($p.table_count)
            .bind($p.row_count)
    };
}

const INSERT_SNAPSHOT: &str = concat!(
    "INSERT INTO snapshots (",
    snapshot_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);

const UPSERT_SNAPSHOT: &str = concat!(
    "INSERT INTO snapshots (",
    snapshot_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
     ON CONFLICT (repository, id) DO UPDATE SET \
     source = excluded.source, engine = excluded.engine, \
     started_at_ns = excluded.started_at_ns, finished_at_ns = excluded.finished_at_ns, \
     bytes_read = excluded.bytes_read, bytes_stored = excluded.bytes_stored, \
     chunks = excluded.chunks, new_chunks = excluded.new_chunks, \
     stream_sha256 = excluded.stream_sha256, consistent_point = excluded.consistent_point, \
     server_version = excluded.server_version, tool_version = excluded.tool_version, \
     table_count = excluded.table_count, row_count = excluded.row_count"
);

const UPSERT_DRILL_RUN: &str = concat!(
    "INSERT INTO drill_runs (",
    drill_run_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
     ON CONFLICT (id) DO UPDATE SET \
     drill = excluded.drill, source = excluded.source, repository = excluded.repository, \
     snapshot_id = excluded.snapshot_id, \
     started_at_ns = excluded.started_at_ns, finished_at_ns = excluded.finished_at_ns, \
     verdict = excluded.verdict, rto_seconds = excluded.rto_seconds, \
     rpo_seconds = excluded.rpo_seconds, sla_rto_seconds = excluded.sla_rto_seconds, \
     sla_rpo_seconds = excluded.sla_rpo_seconds, detail = excluded.detail, \
     evidence = excluded.evidence"
);

#[async_trait::async_trait]
impl Catalog for SqliteCatalog {
    async fn record_snapshot(&self, s: &SnapshotRecord) -> Result<(), CatalogError> {
        let p = SnapshotParams::new(s)?;
        bind_snapshot!(sqlx::query(UPSERT_SNAPSHOT), p)
            .execute(&self.pool)
            .await
            .map_err(self.err("record_snapshot"))?;
        Ok(())
    }

    async fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotRecord>, CatalogError> {
        let rows: Vec<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM snapshots \
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR repository = ?2) \
             ORDER BY finished_at_ns DESC, id DESC, repository DESC LIMIT ?3"
        ))
        .bind(filter.source.as_deref())
        .bind(filter.repository.as_deref())
        .bind(rows::sqlite_limit(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("snapshot listing"))?;
        rows.into_iter().map(|r| r.into_record(&self.target)).collect()
    }

    async fn snapshot(&self, id_or_prefix: &str) -> Result<Option<SnapshotRecord>, CatalogError> {
        if let Some(found) = self.by_exact_id(id_or_prefix).await? {
            return Ok(Some(found));
        }
        rows::check_prefix(id_or_prefix)?;
        // substr rather than LIKE/GLOB: no wildcard escaping, and always case-sensitive.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT id FROM snapshots WHERE substr(id, 1, length(?1)) = ?1 \
             ORDER BY id LIMIT ?2",
        )
        .bind(id_or_prefix)
        .bind(MAX_CANDIDATES as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("snapshot lookup"))?;
        match rows::pick_candidate(id_or_prefix, ids)? {
            Some(id) => self.by_exact_id(&id).await,
            None => Ok(None),
        }
    }

    async fn replace_repository_snapshots(
        &self,
        repository: &str,
        snapshots: &[SnapshotRecord],
    ) -> Result<(), CatalogError> {
        rows::check_rebuild_input(repository, snapshots)?;
        let op = "replace_repository_snapshots";
        // IMMEDIATE takes the write lock up front (waiting up to busy_timeout) instead of failing
        // halfway when another writer appears. Dropping `tx` on any error rolls everything back.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err(op))?;
        sqlx::query("DELETE FROM snapshots WHERE repository = ?1")
            .bind(repository)
            .execute(&mut *tx)
            .await
            .map_err(self.err(op))?;
        for s in snapshots {
            let p = SnapshotParams::new(s)?;
            bind_snapshot!(sqlx::query(INSERT_SNAPSHOT), p)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if rows::is_unique_violation(&e) {
                        CatalogError::DuplicateSnapshot {
                            id: s.id.clone(),
                            repository: repository.to_owned(),
                        }
                    } else {
                        self.err(op)(e)
                    }
                })?;
        }
        tx.commit().await.map_err(self.err(op))
    }

    async fn delete_snapshots(&self, repository: &str, ids: &[String]) -> Result<u64, CatalogError> {
        let op = "delete_snapshots";
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err(op))?;
        let mut removed = 0;
        for id in ids {
            removed += sqlx::query("DELETE FROM snapshots WHERE repository = ?1 AND id = ?2")
                .bind(repository)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err(op))?
                .rows_affected();
        }
        tx.commit().await.map_err(self.err(op))?;
        Ok(removed)
    }

    async fn jobs(&self) -> Result<Vec<JobState>, CatalogError> {
        let rows: Vec<JobRow> = sqlx::query_as(concat!("SELECT ", job_columns!(), " FROM jobs ORDER BY job"))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("jobs"))?;
        rows.into_iter().map(|r| r.into_record(&self.target)).collect()
    }

    async fn claim_job(&self, c: &JobClaim) -> Result<bool, CatalogError> {
        // One statement, so that two daemons racing for the same occurrence are serialised by the
        // database: the row lock (PostgreSQL) or the write lock (SQLite) lets one update through,
        // and the other then sees the moved `last_due_ns` and changes nothing.
        let result = sqlx::query(
            "INSERT INTO jobs (job, last_due_ns, owner, lease_expires_ns, last_started_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (job) DO UPDATE SET last_due_ns = excluded.last_due_ns, owner = excluded.owner, \
             lease_expires_ns = excluded.lease_expires_ns, last_started_ns = excluded.last_started_ns \
             WHERE (jobs.last_due_ns IS NULL OR jobs.last_due_ns < excluded.last_due_ns) \
             AND (jobs.owner IS NULL OR jobs.lease_expires_ns < ?5)",
        )
        .bind(&c.job)
        .bind(ts_to_db("due", c.due)?)
        .bind(&c.owner)
        .bind(ts_to_db("lease_until", c.lease_until)?)
        .bind(ts_to_db("now", c.now)?)
        .execute(&self.pool)
        .await
        .map_err(self.err("claim_job"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn skip_job(&self, job: &str, due: jiff::Timestamp) -> Result<bool, CatalogError> {
        let result = sqlx::query(
            "INSERT INTO jobs (job, last_due_ns) VALUES (?1, ?2) \
             ON CONFLICT (job) DO UPDATE SET last_due_ns = excluded.last_due_ns \
             WHERE jobs.last_due_ns IS NULL OR jobs.last_due_ns < excluded.last_due_ns",
        )
        .bind(job)
        .bind(ts_to_db("due", due)?)
        .execute(&self.pool)
        .await
        .map_err(self.err("skip_job"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn renew_job(&self, job: &str, owner: &str, lease_until: jiff::Timestamp) -> Result<bool, CatalogError> {
        let result = sqlx::query("UPDATE jobs SET lease_expires_ns = ?3 WHERE job = ?1 AND owner = ?2")
            .bind(job)
            .bind(owner)
            .bind(ts_to_db("lease_until", lease_until)?)
            .execute(&self.pool)
            .await
            .map_err(self.err("renew_job"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn finish_job(&self, d: &JobDone) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE jobs SET owner = NULL, lease_expires_ns = NULL, last_finished_ns = ?3, \
             last_outcome = ?4, last_detail = ?5 WHERE job = ?1 AND owner = ?2",
        )
        .bind(&d.job)
        .bind(&d.owner)
        .bind(ts_to_db("finished_at", d.finished_at)?)
        .bind(&d.outcome)
        .bind(&d.detail)
        .execute(&self.pool)
        .await
        .map_err(self.err("finish_job"))?;
        Ok(())
    }

    async fn record_run(&self, r: &RunRecord) -> Result<i64, CatalogError> {
        let p = RunParams::new(r)?;
        let op = "record_run";
        let query = match r.id {
            None => sqlx::query_scalar(
                "INSERT INTO runs (kind, source, repository, snapshot_id, started_at_ns, \
                 finished_at_ns, status, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 RETURNING id",
            ),
            Some(_) => sqlx::query_scalar(
                "UPDATE runs SET kind = ?1, source = ?2, repository = ?3, snapshot_id = ?4, \
                 started_at_ns = ?5, finished_at_ns = ?6, status = ?7, detail = ?8 \
                 WHERE id = ?9 RETURNING id",
            ),
        }
        .bind(p.kind)
        .bind(p.source)
        .bind(p.repository)
        .bind(p.snapshot_id)
        .bind(p.started_at_ns)
        .bind(p.finished_at_ns)
        .bind(p.status)
        .bind(p.detail);
        let query = match r.id {
            Some(id) => query.bind(id),
            None => query,
        };
        let id: Option<i64> = query.fetch_optional(&self.pool).await.map_err(self.err(op))?;
        match (id, r.id) {
            (Some(id), _) => Ok(id),
            (None, wanted) => Err(CatalogError::RunNotFound {
                id: wanted.unwrap_or_default(),
            }),
        }
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, CatalogError> {
        let rows: Vec<RunRow> = sqlx::query_as(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR source = ?2) \
             ORDER BY finished_at_ns DESC, id DESC LIMIT ?3"
        ))
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.source.as_deref())
        .bind(rows::sqlite_limit(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("run listing"))?;
        rows.into_iter().map(|r| r.into_record(&self.target)).collect()
    }

    async fn record_drill_run(&self, r: &DrillRunRecord) -> Result<(), CatalogError> {
        let p = DrillRunParams::new(r)?;
        sqlx::query(UPSERT_DRILL_RUN)
            .bind(p.id)
            .bind(p.drill)
            .bind(p.source)
            .bind(p.repository)
            .bind(p.snapshot_id)
            .bind(p.started_at_ns)
            .bind(p.finished_at_ns)
            .bind(p.verdict)
            .bind(p.rto_seconds)
            .bind(p.rpo_seconds)
            .bind(p.sla_rto_seconds)
            .bind(p.sla_rpo_seconds)
            .bind(p.detail)
            .bind(p.evidence)
            .execute(&self.pool)
            .await
            .map_err(self.err("record_drill_run"))?;
        Ok(())
    }

    async fn drill_runs(&self, filter: &DrillRunFilter) -> Result<Vec<DrillRunRecord>, CatalogError> {
        let rows: Vec<DrillRunRow> = sqlx::query_as(concat!(
            "SELECT ",
            drill_run_columns!(),
            " FROM drill_runs \
             WHERE (?1 IS NULL OR drill = ?1) AND (?2 IS NULL OR source = ?2) \
             ORDER BY started_at_ns DESC, id DESC LIMIT ?3"
        ))
        .bind(filter.drill.as_deref())
        .bind(filter.source.as_deref())
        .bind(rows::sqlite_limit(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("drill run listing"))?;
        rows.into_iter().map(|r| r.into_record(&self.target)).collect()
    }

    // The control plane: SQL in catalog::control, expanded into this backend's `*_impl` methods.

    async fn insert_token(&self, t: &crate::catalog::StoredToken) -> Result<(), CatalogError> {
        self.insert_token_impl(t).await
    }
    async fn token(&self, id: &str) -> Result<Option<crate::catalog::StoredToken>, CatalogError> {
        self.token_impl(id).await
    }
    async fn tokens(&self) -> Result<Vec<crate::catalog::StoredToken>, CatalogError> {
        self.tokens_impl().await
    }
    async fn update_token(&self, id: &str, body: &str) -> Result<bool, CatalogError> {
        self.update_token_impl(id, body).await
    }
    async fn insert_approval(&self, a: &crate::catalog::StoredApproval) -> Result<(), CatalogError> {
        self.insert_approval_impl(a).await
    }
    async fn approval(&self, id: &str) -> Result<Option<crate::catalog::StoredApproval>, CatalogError> {
        self.approval_impl(id).await
    }
    async fn approvals(&self, state: Option<&str>) -> Result<Vec<crate::catalog::StoredApproval>, CatalogError> {
        self.approvals_impl(state).await
    }
    async fn update_approval(
        &self,
        a: &crate::catalog::StoredApproval,
        expected_version: i64,
    ) -> Result<bool, CatalogError> {
        self.update_approval_impl(a, expected_version).await
    }
    async fn append_audit(
        &self,
        at: jiff::Timestamp,
        body: &str,
        chain: &crate::catalog::ChainHash,
    ) -> Result<crate::catalog::AuditRow, CatalogError> {
        self.append_audit_impl(at, body, chain).await
    }
    async fn audit(&self, after: i64, limit: u32) -> Result<Vec<crate::catalog::AuditRow>, CatalogError> {
        self.audit_impl(after, limit).await
    }
    async fn set_setting(&self, key: &str, body: Option<&str>) -> Result<(), CatalogError> {
        self.set_setting_impl(key, body).await
    }
    async fn settings(&self) -> Result<Vec<(String, String)>, CatalogError> {
        self.settings_impl().await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
