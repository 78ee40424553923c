//! PostgreSQL: logical backups with `pg_dump -Fc`, restores with `pg_restore`.
//!
//! Consistency: a REPEATABLE READ transaction exports its snapshot, `pg_dump --snapshot` dumps exactly
//! that snapshot, and the row counts of the fingerprint are taken inside the same transaction while the
//! dump runs. The transaction stays open until pg_dump has exited.

pub mod archive;
pub(crate) mod dsn;
mod pipeline;
mod tools;
mod units;

use std::process::Stdio;
use std::str::FromStr;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use super::{
    AmcheckOutcome, BackupHandle, DatabaseIdentity, Endpoint, Engine, EngineError, GrowingArchive, RestoreHandle,
    RestoreInput, RestoreOptions, RunningBackup, RunningRestore, TargetState, redact,
};
use crate::repo::{BackupFacts, Fingerprint, TableRows};

/// The stream format of `pg_dump --format=custom`.
pub const FORMAT_CUSTOM: &str = "pg_dump-custom";

/// User tables whose rows pg_dump dumps: ordinary tables outside the system schemas. Partitioned
/// parents are left out because their leaves are counted.
const USER_TABLES: &str = "select n.nspname::text, c.relname::text from pg_class c \
     join pg_namespace n on n.oid = c.relnamespace \
     where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
       and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' \
     order by 1, 2";

pub struct Postgres {
    endpoint: Endpoint,
}

impl Postgres {
    pub fn new(endpoint: Endpoint) -> Self {
        Postgres { endpoint }
    }

    fn dsn_for_messages(&self) -> String {
        redact(&self.endpoint.dsn)
    }

    async fn connect(&self) -> Result<PgConnection, EngineError> {
        let dsn = self.dsn_for_messages();
        let mut opts = PgConnectOptions::from_str(self.endpoint.dsn.as_str()).map_err(|e| EngineError::Connect {
            dsn: dsn.clone(),
            detail: describe(&e),
            fix: "write the DSN as postgres://USER@HOST:PORT/DATABASE (or postgresql:///DATABASE?host=/socket/dir)"
                .into(),
        })?;
        if let Some(pw) = &self.endpoint.password {
            opts = opts.password(pw.expose_secret());
        }
        // Counting a large table's rows takes seconds by design: not worth sqlx's slow-statement
        // warning, which would break `--quiet` output.
        opts = opts
            .application_name("lifeboat")
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        PgConnection::connect_with(&opts).await.map_err(|e| {
            let detail = describe(&e);
            let fix = if detail.contains("password authentication failed") || detail.contains("no password") {
                "check the password the source's password_env / password_file provides"
            } else if detail.contains("does not exist") {
                "check the database and user names in the DSN"
            } else {
                "check that the server is running and reachable at the DSN's host and port"
            };
            EngineError::Connect {
                dsn,
                detail,
                fix: fix.into(),
            }
        })
    }

    fn query_err(&self) -> impl Fn(sqlx::Error) -> EngineError + '_ {
        move |e| EngineError::Query {
            dsn: self.dsn_for_messages(),
            detail: describe(&e),
        }
    }

    async fn identity_on(&self, conn: &mut PgConnection) -> Result<DatabaseIdentity, EngineError> {
        let row = sqlx::query("select current_setting('server_version'), current_database()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(self.query_err())?;
        // pg_control_system() needs elevated rights on some servers; the identity is then unknown and
        // the source-refusal falls back to comparing DSNs.
        let system_identifier: Option<String> =
            sqlx::query_scalar::<_, String>("select system_identifier::text from pg_control_system()")
                .fetch_one(&mut *conn)
                .await
                .ok();
        Ok(DatabaseIdentity {
            server_version: row.get(0),
            system_identifier,
            database: row.get(1),
        })
    }

    async fn row_counts(&self, conn: &mut PgConnection) -> Result<Vec<TableRows>, EngineError> {
        let tables: Vec<(String, String)> = sqlx::query_as(USER_TABLES)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.query_err())?;
        let mut out = Vec::with_capacity(tables.len());
        for (schema, table) in tables {
            let sql = format!(
                "select count(*) from only {}.{}",
                quote_ident(&schema),
                quote_ident(&table)
            );
            let rows: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *conn)
                .await
                .map_err(self.query_err())?;
            out.push(TableRows {
                schema,
                table,
                rows: rows as u64,
            });
        }
        Ok(out)
    }

    /// An order-independent checksum of every user table's content: equal data gives equal sums.
    pub async fn content_checksums(&self) -> Result<Vec<(String, String)>, EngineError> {
        let mut conn = self.connect().await?;
        let tables: Vec<(String, String)> = sqlx::query_as(USER_TABLES)
            .fetch_all(&mut conn)
            .await
            .map_err(self.query_err())?;
        let mut out = Vec::new();
        for (schema, table) in tables {
            let q = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
            let sql = format!(
                "select md5(coalesce(string_agg(h, '' order by h), '')) from (select md5(t::text) h from only {q} t) s"
            );
            let sum: String = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .map_err(self.query_err())?;
            out.push((format!("{schema}.{table}"), sum));
        }
        Ok(out)
    }

    /// Starts `pg_restore` into this endpoint's database with the options every restore shares and
    /// `args`; its stdin is a pipe when `piped`.
    fn spawn_pg_restore(
        &self,
        opts: &RestoreOptions,
        args: &[std::ffi::OsString],
        piped: bool,
    ) -> Result<(Option<tokio::process::ChildStdin>, PgRestoreHandle), EngineError> {
        let mut cmd = self.command("pg_restore");
        cmd.arg("--exit-on-error")
            .arg("--no-password")
            .arg(format!("--dbname={}", self.endpoint.dsn));
        if opts.no_owner {
            cmd.arg("--no-owner").arg("--no-privileges");
        }
        if opts.replace {
            cmd.arg("--clean").arg("--if-exists");
        }
        cmd.args(args);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: `pg_restore --jobs` forks workers, and a cancelled restore must
            // stop them too, not only the parent.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| EngineError::ToolMissing {
            tool: "pg_restore".into(),
            detail: e.to_string(),
        })?;
        let stdin = child.stdin.take();
        let group = tools::GroupGuard::new(child.id());
        Ok((
            stdin,
            PgRestoreHandle {
                child,
                group,
                password: self.endpoint.password.clone(),
            },
        ))
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(tools::path(self.endpoint.bin_dir.as_deref(), tool));
        // The password reaches the tool through its environment, never its command line (visible to
        // every user in `ps`).
        if let Some(pw) = &self.endpoint.password {
            cmd.env("PGPASSWORD", pw.expose_secret());
        }
        cmd.env("PGAPPNAME", "lifeboat");
        cmd
    }
}

/// A database error as an operator should read it. sqlx appends the line of the server's C source
/// that raised it ("... does not exist at line 948"), which reads like a line of the user's SQL or
/// config; it is left out. The catalog's errors use it too.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => format!("error returned from database: {}", db.message()),
        other => other.to_string(),
    }
}

/// Writes the data positions into a staged archive's table of contents, so that each `pg_restore`
/// worker seeks straight to its table (see [`archive`]). A failure costs only speed: it is logged
/// and the restore goes on with the archive as it was.
async fn fill_data_offsets(path: &std::path::Path) {
    let clock = std::time::Instant::now();
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || archive::fill_data_offsets(&owned)).await {
        Ok(Ok(filled)) => tracing::debug!(
            "archive {}: filled in {} data positions ({} blocks) in {:.2}s",
            path.display(),
            filled.entries,
            filled.blocks,
            clock.elapsed().as_secs_f64()
        ),
        Ok(Err(e)) => tracing::warn!(
            "archive {}: could not fill in data positions ({e}); pg_restore will search for each table's data instead",
            path.display()
        ),
        Err(e) => tracing::warn!("archive {}: filling in data positions failed: {e}", path.display()),
    }
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[async_trait]
impl Engine for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn identity(&self) -> Result<DatabaseIdentity, EngineError> {
        let mut conn = self.connect().await?;
        self.identity_on(&mut conn).await
    }

    async fn start_backup(&self) -> Result<RunningBackup, EngineError> {
        let tool_version = tools::version(self.endpoint.bin_dir.as_deref(), "pg_dump")?;
        let mut conn = self.connect().await?;
        let identity = self.identity_on(&mut conn).await?;
        // A table the role cannot read would abort the exporting transaction mid-dump, and pg_dump would
        // then report a confusing "could not import the requested snapshot": say what is wrong up front.
        let unreadable: Vec<String> = sqlx::query_scalar(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c \
               join pg_namespace n on n.oid = c.relnamespace \
              where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
                and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' \
                and not has_table_privilege(c.oid, 'SELECT') order by 1 limit 5",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(self.query_err())?;
        if !unreadable.is_empty() {
            return Err(EngineError::Privileges {
                dsn: self.dsn_for_messages(),
                tables: unreadable.join(", "),
            });
        }
        // The counts run beside pg_dump on a busy server: parallel workers would only take CPU from
        // the dump (a count on its own costs 0.9 core-seconds at scale 100, 1.2-1.6 with workers).
        sqlx::raw_sql(
            "begin isolation level repeatable read, read only; set local max_parallel_workers_per_gather = 0",
        )
        .execute(&mut conn)
        .await
        .map_err(self.query_err())?;
        let snapshot: String = sqlx::query_scalar("select pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await
            .map_err(self.query_err())?;
        let lsn: Option<String> = sqlx::query_scalar(
            "select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(self.query_err())?;

        let mut cmd = self.command("pg_dump");
        cmd.arg("--format=custom")
            .arg("--compress=0") // the repository compresses; compressing twice only burns CPU
            .arg(format!("--snapshot={snapshot}"))
            .arg("--no-password")
            .arg(format!("--dbname={}", self.endpoint.dsn))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| EngineError::ToolMissing {
            tool: "pg_dump".into(),
            detail: e.to_string(),
        })?;
        let stdout = child.stdout.take().expect("piped");
        tools::widen_pipe(&stdout);
        let stderr = tools::collect_stderr(child.stderr.take().expect("piped"));

        // Counting runs while pg_dump reads, inside the exporting transaction: same snapshot, and the
        // transaction stays open (so the snapshot stays importable) until finish.
        let dsn = self.dsn_for_messages();
        let counter = Postgres {
            endpoint: self.endpoint.clone(),
        };
        let counts = tokio::spawn(async move {
            let r = counter.row_counts(&mut conn).await;
            (conn, r)
        });
        let handle = PgDumpHandle {
            child: tools::KillOnDrop::new(child),
            stderr,
            counts,
            identity,
            lsn,
            tool_version,
            dsn,
            password: self.endpoint.password.clone(),
        };
        Ok(RunningBackup {
            stream: Box::new(stdout),
            format: FORMAT_CUSTOM.into(),
            method: "logical".into(),
            handle: Box::new(handle),
        })
    }

    async fn target_state(&self) -> Result<TargetState, EngineError> {
        let mut conn = self.connect().await?;
        let identity = self.identity_on(&mut conn).await?;
        let row = sqlx::query(
            "select count(*), coalesce((array_agg(name order by name))[1:5], '{}') from ( \
               select n.nspname || '.' || c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace \
               where c.relkind in ('r','p','v','m','S','f') and n.nspname not in ('pg_catalog','information_schema') \
                 and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%' \
               union all \
               select 'schema ' || nspname from pg_namespace \
               where nspname not in ('public','pg_catalog','information_schema') and nspname not like 'pg\\_%') o",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(self.query_err())?;
        let count: i64 = row.get(0);
        let examples: Vec<String> = row.get(1);
        Ok(TargetState {
            identity,
            existing_objects: count as u64,
            examples,
        })
    }

    async fn start_restore(
        &self,
        format: &str,
        input: RestoreInput,
        opts: &RestoreOptions,
    ) -> Result<RunningRestore, EngineError> {
        if format != FORMAT_CUSTOM {
            return Err(EngineError::WrongFormat {
                engine: "postgres".into(),
                format: format.into(),
            });
        }
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let piped = match &input {
            RestoreInput::File(path) => {
                fill_data_offsets(path).await;
                args.push(format!("--jobs={}", opts.jobs.max(1)).into());
                args.push(path.into());
                false
            }
            RestoreInput::Stdin => {
                // One transaction: a stream that turns out damaged midway rolls back to nothing.
                args.push("--single-transaction".into());
                true
            }
        };
        let (stdin, handle) = self.spawn_pg_restore(opts, &args, piped)?;
        Ok(RunningRestore {
            stdin,
            handle: Box::new(handle),
        })
    }

    async fn restore_growing(
        &self,
        format: &str,
        archive: GrowingArchive,
        opts: &RestoreOptions,
    ) -> Result<Option<Vec<TableRows>>, EngineError> {
        if format != FORMAT_CUSTOM || opts.replace || opts.jobs < 2 {
            return Ok(None);
        }
        pipeline::restore(self, archive, opts).await
    }

    async fn fingerprint(&self) -> Result<Fingerprint, EngineError> {
        let mut conn = self.connect().await?;
        sqlx::raw_sql("begin isolation level repeatable read, read only")
            .execute(&mut conn)
            .await
            .map_err(self.query_err())?;
        let tables = self.row_counts(&mut conn).await?;
        let _ = sqlx::raw_sql("rollback").execute(&mut conn).await;
        Ok(Fingerprint { tables })
    }

    async fn query_text(&self, sql: &str) -> Result<Option<String>, EngineError> {
        let mut conn = self.connect().await?;
        query_text_on(&mut conn, sql).await.map_err(self.check_err())
    }

    async fn query_timestamp(&self, sql: &str) -> Result<Option<jiff::Timestamp>, EngineError> {
        let mut conn = self.connect().await?;
        let wrapped = format!(
            "select extract(epoch from (({})))::float8",
            sql.trim().trim_end_matches(';')
        );
        let epoch: Option<f64> = sqlx::query_scalar(AssertSqlSafe(wrapped))
            .fetch_one(&mut conn)
            .await
            .map_err(self.check_err())?;
        Ok(epoch.and_then(|e| jiff::Timestamp::from_microsecond((e * 1e6) as i64).ok()))
    }

    async fn amcheck(&self) -> Result<AmcheckOutcome, EngineError> {
        let mut conn = self.connect().await?;
        let available: bool =
            sqlx::query_scalar("select exists (select 1 from pg_available_extensions where name = 'amcheck')")
                .fetch_one(&mut conn)
                .await
                .map_err(self.query_err())?;
        if !available {
            return Ok(AmcheckOutcome::Unavailable {
                reason: "the amcheck extension is not installed on this server".into(),
            });
        }
        // The database is a throwaway copy: installing the extension in it is harmless.
        if let Err(e) = sqlx::raw_sql("create extension if not exists amcheck")
            .execute(&mut conn)
            .await
        {
            return Ok(AmcheckOutcome::Unavailable {
                reason: format!("cannot create extension amcheck: {e}"),
            });
        }
        let indexes: Vec<String> = sqlx::query_scalar(
            "select format('%I.%I', n.nspname, c.relname) from pg_index i \
               join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam \
               join pg_namespace n on n.oid = c.relnamespace \
              where a.amname = 'btree' and n.nspname not in ('pg_catalog', 'information_schema') \
                and n.nspname not like 'pg\\_toast%' and i.indisvalid order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(self.query_err())?;
        for name in &indexes {
            let sql = format!("select bt_index_check('{}'::regclass, true)", name.replace('\'', "''"));
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await {
                return Ok(AmcheckOutcome::Corrupt {
                    detail: format!("index {name}: {e}"),
                });
            }
        }
        Ok(AmcheckOutcome::Sound {
            indexes: indexes.len() as u64,
        })
    }

    async fn delete_one_row(&self, schema: &str, table: &str) -> Result<(), EngineError> {
        let mut conn = self.connect().await?;
        let q = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let sql = format!("delete from only {q} where ctid = (select ctid from only {q} limit 1)");
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(self.query_err())?;
        Ok(())
    }

    async fn create_database(&self, name: &str) -> Result<Endpoint, EngineError> {
        let mut conn = self.connect().await?;
        let sql = format!("create database {}", quote_ident(name));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(self.query_err())?;
        Ok(self.with_database(name))
    }

    async fn drop_database(&self, name: &str) -> Result<(), EngineError> {
        let mut conn = self.connect().await?;
        let sql = format!("drop database if exists {} with (force)", quote_ident(name));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(self.query_err())?;
        Ok(())
    }

    async fn databases_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        let mut conn = self.connect().await?;
        // Not LIKE: `_` in a prefix would be a wildcard.
        sqlx::query_scalar("select datname::text from pg_database where left(datname, length($1)) = $1 order by 1")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await
            .map_err(self.query_err())
    }

    fn drop_database_blocking(&self, name: &str) {
        let sql = format!("drop database if exists {} with (force)", quote_ident(name));
        let _ = self
            .command("psql")
            .args(["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", self.endpoint.dsn))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    async fn mark_incomplete(&self, note: &str) -> Result<(), EngineError> {
        let mut conn = self.connect().await?;
        let sql: String =
            sqlx::query_scalar("select format('comment on database %I is %L', current_database(), $1::text)")
                .bind(note)
                .fetch_one(&mut conn)
                .await
                .map_err(self.query_err())?;
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(self.query_err())?;
        Ok(())
    }
}

impl Postgres {
    fn check_err(&self) -> impl Fn(sqlx::Error) -> EngineError + '_ {
        move |e| EngineError::Check {
            dsn: self.dsn_for_messages(),
            detail: describe(&e),
        }
    }

    /// An endpoint for another database on the same server.
    fn with_database(&self, name: &str) -> Endpoint {
        let mut dsn = self.endpoint.dsn.clone();
        let has_dbname_param = dsn.query_pairs().any(|(k, _)| k == "dbname");
        if has_dbname_param {
            let pairs: Vec<(String, String)> = dsn
                .query_pairs()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        if k == "dbname" { name.to_string() } else { v.to_string() },
                    )
                })
                .collect();
            dsn.query_pairs_mut().clear().extend_pairs(pairs);
        } else {
            dsn.set_path(&format!("/{name}"));
        }
        Endpoint {
            dsn,
            ..self.endpoint.clone()
        }
    }
}

pub(crate) async fn query_text_on(conn: &mut PgConnection, sql: &str) -> Result<Option<String>, sqlx::Error> {
    // A scalar subquery: exactly one column, at most one row, or the server says which rule was broken.
    let wrapped = format!("select (({}))::text", sql.trim().trim_end_matches(';'));
    sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(wrapped))
        .fetch_one(conn)
        .await
}

struct PgDumpHandle {
    /// Killed if the backup is dropped unfinished (cancelled), so pg_dump never outlives it.
    child: tools::KillOnDrop,
    stderr: std::thread::JoinHandle<String>,
    counts: tokio::task::JoinHandle<(PgConnection, Result<Vec<TableRows>, EngineError>)>,
    identity: DatabaseIdentity,
    lsn: Option<String>,
    tool_version: String,
    dsn: String,
    password: Option<secrecy::SecretString>,
}

#[async_trait]
impl BackupHandle for PgDumpHandle {
    async fn finish(self: Box<Self>) -> Result<BackupFacts, EngineError> {
        let PgDumpHandle {
            child,
            stderr,
            counts,
            identity,
            lsn,
            tool_version,
            dsn,
            password,
        } = *self;
        let mut child = child.into_inner();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .map_err(|e| EngineError::ToolFailed {
                tool: "pg_dump".into(),
                status: "unknown".into(),
                stderr: e.to_string(),
            })?;
        let stderr = stderr.join().unwrap_or_default();
        let (mut conn, tables) = counts.await.map_err(|e| EngineError::Query {
            dsn: dsn.clone(),
            detail: e.to_string(),
        })?;
        let _ = sqlx::raw_sql("rollback").execute(&mut conn).await;
        // A failed count aborts the exporting transaction, which makes pg_dump fail too: the count's
        // error is the cause, pg_dump's only the consequence.
        let tables = tables?;
        if !status.success() {
            return Err(EngineError::ToolFailed {
                tool: "pg_dump".into(),
                status: tools::describe_status(status),
                stderr: tools::scrub(&stderr, password.as_ref()),
            });
        }
        let mut tables = tables;
        tables.sort();
        Ok(BackupFacts {
            server_version: identity.server_version,
            tool: "pg_dump".into(),
            tool_version,
            system_identifier: identity.system_identifier,
            database: identity.database,
            consistent_point: lsn,
            fingerprint: Fingerprint { tables },
        })
    }

    async fn abort(self: Box<Self>) {
        let me = *self;
        let mut child = me.child.into_inner();
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        me.counts.abort();
    }
}

struct PgRestoreHandle {
    child: tokio::process::Child,
    /// Kills pg_restore and its workers if the restore is dropped unfinished.
    group: tools::GroupGuard,
    password: Option<secrecy::SecretString>,
}

#[async_trait]
impl RestoreHandle for PgRestoreHandle {
    async fn finish(self: Box<Self>) -> Result<(), EngineError> {
        let PgRestoreHandle {
            child,
            mut group,
            password,
        } = *self;
        let out = child.wait_with_output().await.map_err(|e| EngineError::ToolFailed {
            tool: "pg_restore".into(),
            status: "unknown".into(),
            stderr: e.to_string(),
        })?;
        group.disarm();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(EngineError::ToolFailed {
                tool: "pg_restore".into(),
                status: tools::describe_status(out.status),
                stderr: tools::scrub(&tools::tail(&stderr, 2000), password.as_ref()),
            });
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        self.group.kill();
        let _ = self.child.kill().await;
    }
}
