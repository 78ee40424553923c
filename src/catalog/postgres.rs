//! The PostgreSQL catalog: one history shared by several daemons.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::error::{Scrubber, redact_url};
use super::rows::{
    self, DrillRunParams, DrillRunRow, JobRow, RunParams, RunRow, SnapshotParams, SnapshotRow, drill_run_columns,
    job_columns, run_columns, snapshot_columns, ts_to_db,
};
use super::{
    Catalog, CatalogError, DrillRunFilter, DrillRunRecord, JobClaim, JobDone, JobState, MAX_CANDIDATES, RunFilter,
    RunRecord, SnapshotFilter, SnapshotRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Enough for a daemon's concurrent jobs; several daemons share the server's connection budget.
const MAX_CONNECTIONS: u32 = 5;
/// How long to wait for a connection before calling the server unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct PgCatalog {
    pool: PgPool,
    /// The URL with its password replaced, for messages.
    target: String,
    /// Removes the password from driver messages, should one ever echo it.
    scrub: Scrubber,
}

impl PgCatalog {
    pub(crate) async fn open(url: &str) -> Result<Self, CatalogError> {
        let target = redact_url(url);
        let scrub = Scrubber::for_url(url);
        let invalid = |detail: String| CatalogError::InvalidUrl {
            target: target.clone(),
            detail,
        };
        // sqlx does not look at the scheme; a mysql:// URL would fail later and more obscurely.
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(invalid("the scheme must be postgres:// or postgresql://".into()));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| invalid(scrub.scrub(&e.to_string())))?
            // Shows who holds the connections in pg_stat_activity.
            .application_name("lifeboat");
        let unreachable = |e: sqlx::Error| CatalogError::Unreachable {
            target: target.clone(),
            detail: scrub.scrub(&crate::engine::postgres::describe(&e)),
        };
        // One direct connection first: the pool retries refused connections until its acquire
        // timeout and then reports only "pool timed out", hiding the cause an operator needs
        // ("connection refused", "password authentication failed", "database does not exist").
        let probe = PgConnection::connect_with(&options).await.map_err(unreachable)?;
        probe.close().await.map_err(unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        // sqlx holds an advisory lock while migrating, so daemons starting together take turns.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| CatalogError::migrate(&target, &scrub, &e))?;
        Ok(PgCatalog { pool, target, scrub })
    }

    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> CatalogError + '_ {
        move |e| CatalogError::query(op, &self.target, &self.scrub, &e)
    }

    async fn by_exact_id(&self, id: &str) -> Result<Option<SnapshotRecord>, CatalogError> {
        let row: Option<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM snapshots WHERE id = $1 ORDER BY repository LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("snapshot lookup"))?;
        row.map(|r| r.into_record(&self.target)).transpose()
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
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);

const UPSERT_SNAPSHOT: &str = concat!(
    "INSERT INTO snapshots (",
    snapshot_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
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
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (id) DO UPDATE SET \
     drill = excluded.drill, source = excluded.source, repository = excluded.repository, \
     snapshot_id = excluded.snapshot_id, \
     started_at_ns = excluded.started_at_ns, finished_at_ns = excluded.finished_at_ns, \
     verdict = excluded.verdict, rto_seconds = excluded.rto_seconds, \
     rpo_seconds = excluded.rpo_seconds, sla_rto_seconds = excluded.sla_rto_seconds, \
     sla_rpo_seconds = excluded.sla_rpo_seconds, detail = excluded.detail, \
     evidence = excluded.evidence"
);

impl PgCatalog {
    super::control::control_methods!();

    fn sql(&self, text: &'static str) -> &'static str {
        text
    }

    /// Holds the audit log alone until the transaction ends (readers go on), so that daemons sharing
    /// the catalog append one after the other and the chain never forks.
    async fn begin_audit(&self) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, CatalogError> {
        let mut tx = self.pool.begin().await.map_err(self.err("append_audit"))?;
        sqlx::query("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(self.err("append_audit"))?;
        Ok(tx)
    }
}

#[async_trait::async_trait]
impl Catalog for PgCatalog {
    async fn record_snapshot(&self, s: &SnapshotRecord) -> Result<(), CatalogError> {
        let p = SnapshotParams::new(s)?;
        bind_snapshot!(sqlx::query(UPSERT_SNAPSHOT), p)
            .execute(&self.pool)
            .await
            .map_err(self.err("record_snapshot"))?;
        Ok(())
    }

    async fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<SnapshotRecord>, CatalogError> {
        // The casts tell PostgreSQL the parameter types where `IS NULL` alone cannot; a NULL
        // LIMIT means no limit.
        let rows: Vec<SnapshotRow> = sqlx::query_as(concat!(
            "SELECT ",
            snapshot_columns!(),
            " FROM snapshots \
             WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR repository = $2) \
             ORDER BY finished_at_ns DESC, id DESC, repository DESC LIMIT $3"
        ))
        .bind(filter.source.as_deref())
        .bind(filter.repository.as_deref())
        .bind(filter.limit.map(i64::from))
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
        // starts_with rather than LIKE: no wildcard escaping, and always case-sensitive.
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT id FROM snapshots WHERE starts_with(id, $1) ORDER BY id LIMIT $2")
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
        // Dropping `tx` on any error rolls everything back; readers see the old set until commit.
        let mut tx = self.pool.begin().await.map_err(self.err(op))?;
        sqlx::query("DELETE FROM snapshots WHERE repository = $1")
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
        let result = sqlx::query("DELETE FROM snapshots WHERE repository = $1 AND id = ANY($2)")
            .bind(repository)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(self.err("delete_snapshots"))?;
        Ok(result.rows_affected())
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
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job) DO UPDATE SET last_due_ns = excluded.last_due_ns, owner = excluded.owner, \
             lease_expires_ns = excluded.lease_expires_ns, last_started_ns = excluded.last_started_ns \
             WHERE (jobs.last_due_ns IS NULL OR jobs.last_due_ns < excluded.last_due_ns) \
             AND (jobs.owner IS NULL OR jobs.lease_expires_ns < $5)",
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
            "INSERT INTO jobs (job, last_due_ns) VALUES ($1, $2) \
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
        let result = sqlx::query("UPDATE jobs SET lease_expires_ns = $3 WHERE job = $1 AND owner = $2")
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
            "UPDATE jobs SET owner = NULL, lease_expires_ns = NULL, last_finished_ns = $3, \
             last_outcome = $4, last_detail = $5 WHERE job = $1 AND owner = $2",
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
        let query = match r.id {
            None => sqlx::query_scalar(
                "INSERT INTO runs (kind, source, repository, snapshot_id, started_at_ns, \
                 finished_at_ns, status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id",
            ),
            Some(_) => sqlx::query_scalar(
                "UPDATE runs SET kind = $1, source = $2, repository = $3, snapshot_id = $4, \
                 started_at_ns = $5, finished_at_ns = $6, status = $7, detail = $8 \
                 WHERE id = $9 RETURNING id",
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
        // PostgreSQL refuses a parameter the statement does not use, so bind the id only for
        // the UPDATE.
        let query = match r.id {
            Some(id) => query.bind(id),
            None => query,
        };
        let id: Option<i64> = query.fetch_optional(&self.pool).await.map_err(self.err("record_run"))?;
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
            " FROM runs \
             WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR source = $2) \
             ORDER BY finished_at_ns DESC, id DESC LIMIT $3"
        ))
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.source.as_deref())
        .bind(filter.limit.map(i64::from))
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
             WHERE ($1::text IS NULL OR drill = $1) AND ($2::text IS NULL OR source = $2) \
             ORDER BY started_at_ns DESC, id DESC LIMIT $3"
        ))
        .bind(filter.drill.as_deref())
        .bind(filter.source.as_deref())
        .bind(filter.limit.map(i64::from))
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
