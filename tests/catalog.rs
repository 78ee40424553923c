//! The catalog suite: every test is written once against `dyn Catalog` and run against both
//! backends, SQLite in a temp dir and PostgreSQL in a database of its own on the machine's server
//! (127.0.0.1:5432, user postgres, trust auth; override with LIFEBOAT_TEST_PG_URL, an admin URL
//! whose database is used only to create and drop the test databases).
//!
//! A test database is dropped at the end even when the test panics, then the panic is resumed.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use jiff::Timestamp;
use lifeboat::catalog::{
    self, Catalog, CatalogError, CatalogTarget, DrillRunFilter, DrillRunRecord, DrillVerdict, JobClaim, JobDone,
    RunFilter, RunKind, RunRecord, RunStatus, SnapshotFilter, SnapshotRecord,
};
use serde_json::json;
use sqlx::Connection;

// ---------------------------------------------------------------------------------------------
// Fixtures

const PG_ADMIN_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn pg_admin_url() -> String {
    std::env::var("LIFEBOAT_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_DEFAULT.to_owned())
}

/// Where one test's catalog lives, and how to clean it up.
struct Fixture {
    target: CatalogTarget,
    _dir: Option<tempfile::TempDir>,
    pg_database: Option<String>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        // Two missing levels: open must create the parent directories.
        let path = dir.path().join("state").join("nested").join("catalog.db");
        Fixture {
            target: CatalogTarget::Sqlite(path),
            _dir: Some(dir),
            pg_database: None,
        }
    }

    async fn postgres() -> Fixture {
        let admin = pg_admin_url();
        let name = format!("lifeboat_cat_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("catalog tests need PostgreSQL ({e}); start it or set LIFEBOAT_TEST_PG_URL"));
        // The name is ours (hex digits only), so formatting it into the statement is safe.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).expect("admin URL");
        url.set_path(&format!("/{name}"));
        Fixture {
            target: CatalogTarget::Postgres(url.to_string()),
            _dir: None,
            pg_database: Some(name),
        }
    }

    async fn open(&self) -> Box<dyn Catalog> {
        catalog::open(&self.target)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.target))
    }

    async fn teardown(self) {
        if let Some(name) = &self.pg_database {
            let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
                .await
                .expect("reconnect to drop the test database");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop test database");
        }
    }
}

/// Tears the fixture down whatever happened, then re-raises the test's panic if there was one.
async fn finish(fixture: Fixture, outcome: std::thread::Result<()>) {
    fixture.teardown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Generates one `#[tokio::test]` per backend for each test function. `catalog` tests take an
/// opened `&dyn Catalog`; `target` tests take the target and open it themselves.
macro_rules! suite {
    (catalog: [$($c:ident),* $(,)?], target: [$($t:ident),* $(,)?] $(,)?) => {
        suite!(@backend sqlite, Fixture::sqlite(), [$($c),*], [$($t),*]);
        suite!(@backend postgres, Fixture::postgres().await, [$($c),*], [$($t),*]);
    };
    (@backend $backend:ident, $fixture:expr, [$($c:ident),*], [$($t:ident),*]) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $c() {
                    let fx = $fixture;
                    let outcome = AssertUnwindSafe(async {
                        let cat = fx.open().await;
                        super::$c(&*cat).await;
                        cat.close().await;
                    })
                    .catch_unwind()
                    .await;
                    finish(fx, outcome).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $t() {
                    let fx = $fixture;
                    let outcome = AssertUnwindSafe(super::$t(&fx.target)).catch_unwind().await;
                    finish(fx, outcome).await;
                }
            )*
        }
    };
}

suite! {
    catalog: [
        round_trip_every_field,
        record_snapshot_upserts_by_repository_and_id,
        snapshots_newest_first,
        snapshots_filter_and_limit,
        prefix_lookup,
        replace_repository_snapshots_replaces_only_that_repository,
        replace_repository_snapshots_is_atomic,
        delete_snapshots_removes_only_those_of_that_repository,
        runs_recorded_and_filtered,
        run_update_by_id,
        large_values_survive,
        out_of_range_values_are_refused,
        drill_run_round_trip_every_field,
        drill_runs_newest_first,
        drill_runs_filter_and_limit,
        drill_run_replaced_by_id,
        drill_run_invalid_values_are_refused,
        job_occurrence_is_claimed_once,
        job_lease_blocks_overlap_until_it_expires,
        job_skip_is_reported_once,
        audit_log_chains_every_entry_once_under_concurrent_appends,
        approval_updates_are_compare_and_set,
        tokens_and_settings_round_trip,
    ],
    target: [
        reopen_keeps_data_and_migrates_idempotently,
        concurrent_first_open,
        drill_runs_migration_applies_on_top_of_schema_1,
        unknown_drill_verdict_is_refused,
    ],
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ts(second: i64, nanosecond: i32) -> Timestamp {
    Timestamp::new(second, nanosecond).expect("valid timestamp")
}

/// A snapshot with every field set and distinct, finished at `t0 + finished` seconds.
fn snap(repository: &str, id: &str, source: &str, finished: i64) -> SnapshotRecord {
    const T0: i64 = 1_795_000_000; // 2026-11-18
    SnapshotRecord {
        id: id.to_owned(),
        source: source.to_owned(),
        repository: repository.to_owned(),
        engine: "postgres".to_owned(),
        started_at: ts(T0 + finished - 60, 123_456_789),
        finished_at: ts(T0 + finished, 987_654_321),
        bytes_read: 1_000 + finished as u64,
        bytes_stored: 500,
        chunks: 7,
        new_chunks: 3,
        stream_sha256: format!("{:0>64}", id),
        consistent_point: Some("0/16B3748".to_owned()),
        server_version: Some("15.20".to_owned()),
        tool_version: Some("pg_dump 15.20".to_owned()),
        tables: 12,
        rows: 34_567,
    }
}

fn ids(records: &[SnapshotRecord]) -> Vec<String> {
    records.iter().map(|s| s.id.clone()).collect()
}

fn all() -> SnapshotFilter {
    SnapshotFilter::default()
}

async fn in_repository(cat: &dyn Catalog, repository: &str) -> Vec<SnapshotRecord> {
    cat.snapshots(&SnapshotFilter {
        repository: Some(repository.to_owned()),
        ..all()
    })
    .await
    .expect("list snapshots")
}

fn run(kind: RunKind, source: &str, finished: i64, status: RunStatus) -> RunRecord {
    RunRecord {
        id: None,
        kind,
        source: Some(source.to_owned()),
        repository: Some("offsite".to_owned()),
        snapshot_id: Some(format!("snap-{finished}")),
        started_at: ts(1_795_000_000 + finished - 5, 1),
        finished_at: ts(1_795_000_000 + finished, 999_999_999),
        status,
        detail: Some(format!("{kind} of {source}: {status}")),
    }
}

/// A drill run with every field set, started at `t0 + started` seconds.
fn drill_run(id: &str, drill: &str, source: &str, started: i64, verdict: DrillVerdict) -> DrillRunRecord {
    const T0: i64 = 1_795_000_000;
    DrillRunRecord {
        id: id.to_owned(),
        drill: drill.to_owned(),
        source: source.to_owned(),
        repository: "offsite".to_owned(),
        snapshot_id: Some(format!("snap-{started}")),
        started_at: ts(T0 + started, 123_456_789),
        finished_at: ts(T0 + started + 90, 987_654_321),
        verdict,
        rto_seconds: Some(83.25),
        rpo_seconds: Some(3_600.5),
        sla_rto_seconds: Some(900.0),
        sla_rpo_seconds: Some(86_400.0),
        detail: Some(format!("{drill} on {source}: {verdict}")),
        evidence: json!({ "drill": drill, "verdict": verdict, "checks": [{ "name": "rows", "status": "pass" }] }),
    }
}

fn drill_ids(records: &[DrillRunRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// A connection straight to the target's database, bypassing lifeboat: to build a catalog as an
/// older lifeboat left it, or to store what lifeboat itself would refuse.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn connect(target: &CatalogTarget) -> Raw {
        match target {
            CatalogTarget::Sqlite(path) => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true);
                Raw::Sqlite(
                    sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .expect("raw sqlite"),
                )
            }
            CatalogTarget::Postgres(url) => {
                Raw::Postgres(sqlx::PgConnection::connect(url).await.expect("raw postgres"))
            }
        }
    }

    /// Applies the repository's migrations up to and including `version`, as the lifeboat that
    /// had only those would have.
    async fn migrate_to(&mut self, version: i64) {
        let dir = |backend: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend)
        };
        match self {
            Raw::Sqlite(conn) => {
                let migrator = sqlx::migrate::Migrator::new(dir("sqlite")).await.unwrap();
                migrator.run_to(version, &mut *conn).await.expect("migrate sqlite");
            }
            Raw::Postgres(conn) => {
                let migrator = sqlx::migrate::Migrator::new(dir("postgres")).await.unwrap();
                migrator.run_to(version, &mut *conn).await.expect("migrate postgres");
            }
        }
    }

    async fn applied_migrations(&mut self) -> Vec<i64> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
        match self {
            Raw::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await.unwrap(),
            Raw::Postgres(conn) => sqlx::query_scalar(sql).fetch_all(conn).await.unwrap(),
        }
    }

    /// Runs one statement built by the test from its own constants.
    async fn execute(&mut self, sql: String) -> Result<(), sqlx::Error> {
        match self {
            Raw::Sqlite(conn) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(drop),
            Raw::Postgres(conn) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(drop),
        }
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(conn) => conn.close().await.unwrap(),
            Raw::Postgres(conn) => conn.close().await.unwrap(),
        }
    }
}

/// A snapshot as an INSERT statement, for a catalog that lifeboat has not migrated.
fn snapshot_insert(s: &SnapshotRecord) -> String {
    let opt = |v: &Option<String>| v.as_ref().map_or("NULL".to_owned(), |v| format!("'{v}'"));
    format!(
        "INSERT INTO snapshots (repository, id, source, engine, started_at_ns, finished_at_ns, bytes_read, \
         bytes_stored, chunks, new_chunks, stream_sha256, consistent_point, server_version, tool_version, \
         table_count, row_count) VALUES ('{}', '{}', '{}', '{}', {}, {}, {}, {}, {}, {}, '{}', {}, {}, {}, {}, {})",
        s.repository,
        s.id,
        s.source,
        s.engine,
        s.started_at.as_nanosecond(),
        s.finished_at.as_nanosecond(),
        s.bytes_read,
        s.bytes_stored,
        s.chunks,
        s.new_chunks,
        s.stream_sha256,
        opt(&s.consistent_point),
        opt(&s.server_version),
        opt(&s.tool_version),
        s.tables,
        s.rows,
    )
}

// ---------------------------------------------------------------------------------------------
// The suite

async fn round_trip_every_field(cat: &dyn Catalog) {
    let full = snap("offsite", "0123456789abcdef", "orders", 10);
    let mut sparse = snap("offsite", "fedcba9876543210", "orders", 20);
    sparse.consistent_point = None;
    sparse.server_version = None;
    sparse.tool_version = None;
    sparse.bytes_stored = 0;
    sparse.new_chunks = 0;
    for s in [&full, &sparse] {
        cat.record_snapshot(s).await.expect("record");
        let back = cat.snapshot(&s.id).await.expect("lookup");
        // Whole-struct equality: every field, timestamps to the nanosecond.
        assert_eq!(back.as_ref(), Some(s));
    }
    assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![sparse, full]);
}

async fn record_snapshot_upserts_by_repository_and_id(cat: &dyn Catalog) {
    let first = snap("offsite", "aaaa0001", "orders", 10);
    cat.record_snapshot(&first).await.unwrap();
    let mut changed = first.clone();
    changed.bytes_stored = 42;
    changed.tool_version = None;
    changed.finished_at = ts(1_800_000_000, 5);
    cat.record_snapshot(&changed).await.unwrap();
    assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![changed.clone()]);

    // Same id in another repository (a copy) is another record, not a replacement.
    let copy = snap("cold", "aaaa0001", "orders", 10);
    cat.record_snapshot(&copy).await.unwrap();
    assert_eq!(in_repository(cat, "offsite").await, vec![changed]);
    assert_eq!(in_repository(cat, "cold").await, vec![copy]);
}

async fn snapshots_newest_first(cat: &dyn Catalog) {
    // Recorded out of order; "c" and "d" finish at the same instant, so id breaks the tie.
    for (id, finished) in [("b", 20), ("a", 10), ("d", 30), ("e", 40), ("c", 30)] {
        let s = snap("offsite", &format!("snap-{id}"), "orders", finished);
        cat.record_snapshot(&s).await.unwrap();
    }
    let got = ids(&cat.snapshots(&all()).await.unwrap());
    assert_eq!(got, ["snap-e", "snap-d", "snap-c", "snap-b", "snap-a"]);

    // Nanoseconds count: one nanosecond later is newer.
    let mut later = snap("offsite", "snap-0", "orders", 40);
    later.finished_at = ts(1_795_000_040, 987_654_322);
    cat.record_snapshot(&later).await.unwrap();
    assert_eq!(ids(&cat.snapshots(&all()).await.unwrap())[0], "snap-0");
}

async fn snapshots_filter_and_limit(cat: &dyn Catalog) {
    for (repo, id, source, finished) in [
        ("offsite", "o1", "orders", 10),
        ("offsite", "o2", "orders", 20),
        ("offsite", "o3", "orders", 30),
        ("offsite", "u1", "users", 15),
        ("cold", "o2", "orders", 20),
        ("cold", "u2", "users", 25),
    ] {
        cat.record_snapshot(&snap(repo, id, source, finished)).await.unwrap();
    }
    let list = |source: Option<&str>, repository: Option<&str>, limit: Option<u32>| {
        let filter = SnapshotFilter {
            source: source.map(str::to_owned),
            repository: repository.map(str::to_owned),
            limit,
        };
        async move {
            let got = cat.snapshots(&filter).await.expect("list");
            got.iter()
                .map(|s| format!("{}/{}", s.repository, s.id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(Some("orders"), None, None).await,
        ["offsite/o3", "offsite/o2", "cold/o2", "offsite/o1"]
    );
    assert_eq!(list(Some("users"), None, None).await, ["cold/u2", "offsite/u1"]);
    assert_eq!(list(Some("orders"), None, Some(2)).await, ["offsite/o3", "offsite/o2"]);
    assert_eq!(list(None, Some("cold"), None).await, ["cold/u2", "cold/o2"]);
    assert_eq!(
        list(Some("orders"), Some("offsite"), Some(10)).await,
        ["offsite/o3", "offsite/o2", "offsite/o1"]
    );
    assert_eq!(list(None, None, Some(3)).await, ["offsite/o3", "cold/u2", "offsite/o2"]);
    assert!(list(None, None, Some(0)).await.is_empty());
    assert!(list(Some("nope"), None, None).await.is_empty());
    assert_eq!(list(None, None, None).await.len(), 6);
}

async fn prefix_lookup(cat: &dyn Catalog) {
    for (repo, id) in [
        ("offsite", "abcd1234"),
        ("offsite", "abcd5678"),
        ("offsite", "abce0000"),
        ("offsite", "f00d"),
        ("offsite", "f00d99"),
        ("offsite", "xyz"),
        // The same snapshot copied to two repositories: one id, not ambiguous.
        ("zz-copy", "cafe0001"),
        ("aa-copy", "cafe0001"),
    ] {
        cat.record_snapshot(&snap(repo, id, "orders", 1)).await.unwrap();
    }
    let found = |q: &'static str| async move {
        cat.snapshot(q)
            .await
            .unwrap_or_else(|e| panic!("lookup {q}: {e}"))
            .map(|s| format!("{}/{}", s.repository, s.id))
    };
    assert_eq!(found("abcd1234").await.as_deref(), Some("offsite/abcd1234"));
    assert_eq!(found("abce").await.as_deref(), Some("offsite/abce0000"));
    assert_eq!(found("abcd5").await.as_deref(), Some("offsite/abcd5678"));
    // An exact id wins over the longer ids it prefixes, even when short.
    assert_eq!(found("f00d").await.as_deref(), Some("offsite/f00d"));
    assert_eq!(found("f00d9").await.as_deref(), Some("offsite/f00d99"));
    assert_eq!(found("xyz").await.as_deref(), Some("offsite/xyz"));
    // Copies: the first repository by name.
    assert_eq!(found("cafe").await.as_deref(), Some("aa-copy/cafe0001"));
    assert_eq!(found("cafe0001").await.as_deref(), Some("aa-copy/cafe0001"));
    // No match, case-sensitive, and no LIKE wildcards.
    assert_eq!(found("0000").await, None);
    assert_eq!(found("ABCD1234").await, None);
    assert_eq!(found("abc%").await, None);
    assert_eq!(found("ab_d").await, None);
    assert_eq!(found("abcd12345").await, None);

    match cat.snapshot("abcd").await {
        Err(CatalogError::AmbiguousPrefix { prefix, candidates }) => {
            assert_eq!(prefix, "abcd");
            assert_eq!(candidates, ["abcd1234", "abcd5678"]);
        }
        other => panic!("expected an ambiguous prefix, got {other:?}"),
    }
    let msg = cat.snapshot("abcd").await.unwrap_err().to_string();
    assert!(
        msg.contains("abcd1234") && msg.contains("abcd5678") && msg.contains("fix:"),
        "{msg}"
    );
    for short in ["abc", "f0", ""] {
        match cat.snapshot(short).await {
            Err(CatalogError::PrefixTooShort { prefix, .. }) => assert_eq!(prefix, short),
            other => panic!("expected too short for {short:?}, got {other:?}"),
        }
    }

    // Many candidates: the error lists a bounded number and says there are more.
    for i in 0..15 {
        let s = snap("offsite", &format!("beef{i:04}"), "orders", 1);
        cat.record_snapshot(&s).await.unwrap();
    }
    match cat.snapshot("beef").await {
        Err(e @ CatalogError::AmbiguousPrefix { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("beef0000") && msg.contains("and more"), "{msg}");
            assert!(!msg.contains("beef0014"), "{msg}");
        }
        other => panic!("expected an ambiguous prefix, got {other:?}"),
    }
}

async fn replace_repository_snapshots_replaces_only_that_repository(cat: &dyn Catalog) {
    let a1 = snap("a", "a1", "orders", 10);
    let a2 = snap("a", "a2", "orders", 20);
    let b1 = snap("b", "a1", "orders", 10); // same id in another repository
    let b2 = snap("b", "b2", "users", 30);
    for s in [&a1, &a2, &b1, &b2] {
        cat.record_snapshot(s).await.unwrap();
    }
    let mut a2_changed = a2.clone();
    a2_changed.bytes_read = 777;
    let a3 = snap("a", "a3", "users", 40);
    cat.replace_repository_snapshots("a", &[a2_changed.clone(), a3.clone()])
        .await
        .expect("replace");
    assert_eq!(in_repository(cat, "a").await, vec![a3, a2_changed]);
    assert_eq!(in_repository(cat, "b").await, vec![b2.clone(), b1.clone()]);

    cat.replace_repository_snapshots("a", &[]).await.unwrap();
    assert!(in_repository(cat, "a").await.is_empty());
    assert_eq!(in_repository(cat, "b").await, vec![b2, b1]);

    // Rebuilding a repository the catalog has never seen simply adds it.
    let c1 = snap("c", "c1", "orders", 50);
    cat.replace_repository_snapshots("c", std::slice::from_ref(&c1))
        .await
        .unwrap();
    assert_eq!(in_repository(cat, "c").await, vec![c1]);
}

async fn replace_repository_snapshots_is_atomic(cat: &dyn Catalog) {
    let a1 = snap("a", "a1", "orders", 10);
    let a2 = snap("a", "a2", "orders", 20);
    let b1 = snap("b", "b1", "orders", 30);
    for s in [&a1, &a2, &b1] {
        cat.record_snapshot(s).await.unwrap();
    }
    let before = cat.snapshots(&all()).await.unwrap();
    let x1 = snap("a", "x1", "orders", 40);
    let x2 = snap("a", "x2", "orders", 50);

    // Fails inside the transaction, after the delete and two inserts: the duplicate id.
    let err = cat
        .replace_repository_snapshots("a", &[x1.clone(), x2.clone(), x1.clone()])
        .await
        .expect_err("duplicate ids must fail");
    let duplicate = matches!(&err, CatalogError::DuplicateSnapshot { id, repository }
        if id == "x1" && repository == "a");
    assert!(duplicate, "{err:?}");
    assert_eq!(cat.snapshots(&all()).await.unwrap(), before);

    // Refused before the transaction: a record of another repository, a value out of range.
    let err = cat
        .replace_repository_snapshots("a", &[x1.clone(), snap("b", "x3", "orders", 60)])
        .await
        .expect_err("foreign record must fail");
    assert!(matches!(err, CatalogError::RepositoryMismatch { .. }), "{err:?}");
    let mut huge = x2.clone();
    huge.rows = u64::MAX;
    let err = cat
        .replace_repository_snapshots("a", &[x1.clone(), huge])
        .await
        .expect_err("out of range must fail");
    assert!(matches!(err, CatalogError::OutOfRange { field: "rows", .. }), "{err:?}");
    assert_eq!(cat.snapshots(&all()).await.unwrap(), before);

    // And the catalog is still writable afterwards (no lock or transaction left behind).
    cat.replace_repository_snapshots("a", std::slice::from_ref(&x1))
        .await
        .unwrap();
    assert_eq!(in_repository(cat, "a").await, vec![x1]);
}

async fn delete_snapshots_removes_only_those_of_that_repository(cat: &dyn Catalog) {
    for (repo, id, finished) in [
        ("offsite", "prune-1", 10),
        ("offsite", "prune-2", 20),
        ("offsite", "prune-3", 30),
        // A copy of prune-1 in another repository: prune of offsite must not touch it.
        ("cold", "prune-1", 10),
    ] {
        cat.record_snapshot(&snap(repo, id, "orders", finished)).await.unwrap();
    }
    let forget = [
        "prune-1".to_string(),
        "prune-2".to_string(),
        "never-recorded".to_string(),
    ];
    assert_eq!(cat.delete_snapshots("offsite", &forget).await.unwrap(), 2);
    assert_eq!(ids(&in_repository(cat, "offsite").await), ["prune-3"]);
    assert_eq!(ids(&in_repository(cat, "cold").await), ["prune-1"]);
    assert_eq!(cat.delete_snapshots("offsite", &forget).await.unwrap(), 0, "idempotent");
    assert_eq!(cat.delete_snapshots("offsite", &[]).await.unwrap(), 0);
    assert!(cat.snapshot("prune-2").await.unwrap().is_none());
}

async fn runs_recorded_and_filtered(cat: &dyn Catalog) {
    let specs = [
        (RunKind::Backup, "orders", 10, RunStatus::Ok),
        (RunKind::Backup, "users", 20, RunStatus::Failed),
        (RunKind::Verify, "orders", 30, RunStatus::Ok),
        (RunKind::Restore, "orders", 40, RunStatus::Failed),
        (RunKind::Backup, "orders", 50, RunStatus::Ok),
    ];
    let mut recorded = Vec::new();
    for (kind, source, finished, status) in specs {
        let mut r = run(kind, source, finished, status);
        let id = cat.record_run(&r).await.expect("record run");
        r.id = Some(id);
        recorded.push(r);
    }
    let mut assigned: Vec<i64> = recorded.iter().map(|r| r.id.unwrap()).collect();
    assigned.dedup();
    assert_eq!(assigned.len(), 5, "ids must be distinct: {assigned:?}");
    assert!(assigned.windows(2).all(|w| w[0] < w[1]), "{assigned:?}");

    // A run with no source, repository, snapshot or detail (e.g. failed before it knew them).
    let mut bare = RunRecord {
        id: None,
        kind: RunKind::Verify,
        source: None,
        repository: None,
        snapshot_id: None,
        started_at: ts(1_795_000_001, 0),
        finished_at: ts(1_795_000_002, 0),
        status: RunStatus::Failed,
        detail: None,
    };
    bare.id = Some(cat.record_run(&bare).await.unwrap());

    let list = |kind: Option<RunKind>, source: Option<&str>, limit: Option<u32>| {
        let filter = RunFilter {
            kind,
            source: source.map(str::to_owned),
            limit,
        };
        async move { cat.runs(&filter).await.expect("list runs") }
    };
    let newest_first: Vec<RunRecord> = recorded.iter().rev().cloned().chain([bare]).collect();
    // Whole records, newest first: the round trip of every field.
    assert_eq!(list(None, None, None).await, newest_first);
    assert_eq!(list(None, None, Some(2)).await, newest_first[..2]);
    let backups = list(Some(RunKind::Backup), None, None).await;
    assert_eq!(backups, [recorded[4].clone(), recorded[1].clone(), recorded[0].clone()]);
    let orders = list(None, Some("orders"), None).await;
    assert_eq!(orders.len(), 4);
    assert!(orders.iter().all(|r| r.source.as_deref() == Some("orders")));
    let order_backups = list(Some(RunKind::Backup), Some("orders"), Some(1)).await;
    assert_eq!(order_backups, [recorded[4].clone()]);
    assert!(list(Some(RunKind::Restore), Some("users"), None).await.is_empty());
}

async fn run_update_by_id(cat: &dyn Catalog) {
    let first = run(RunKind::Backup, "orders", 10, RunStatus::Failed);
    let id = cat.record_run(&first).await.unwrap();
    let other = cat
        .record_run(&run(RunKind::Verify, "orders", 5, RunStatus::Ok))
        .await
        .unwrap();
    let mut fixed = first.clone();
    fixed.id = Some(id);
    fixed.status = RunStatus::Ok;
    fixed.detail = Some("retried".to_owned());
    assert_eq!(cat.record_run(&fixed).await.unwrap(), id);
    let runs = cat.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2, "an update must not insert");
    assert_eq!(runs[0], fixed);
    assert_eq!(runs[1].id, Some(other));

    let mut missing = fixed.clone();
    missing.id = Some(id + other + 1000);
    match cat.record_run(&missing).await {
        Err(CatalogError::RunNotFound { id: n }) => assert_eq!(n, id + other + 1000),
        other => panic!("expected RunNotFound, got {other:?}"),
    }
    assert_eq!(cat.runs(&RunFilter::default()).await.unwrap().len(), 2);
}

async fn large_values_survive(cat: &dyn Catalog) {
    let mut s = snap("offsite", "big00001", "orders", 10);
    s.bytes_read = 5_000_000_000; // above u32 and i32
    s.bytes_stored = i64::MAX as u64; // the largest storable
    s.chunks = u64::from(u32::MAX) + 1;
    s.new_chunks = 3_000_000_000;
    s.tables = 1 << 40;
    s.rows = 9_000_000_000_000_000_000;
    // Both ends of the storable time range, to the nanosecond.
    s.started_at = Timestamp::from_nanosecond(i128::from(i64::MIN)).unwrap();
    s.finished_at = Timestamp::from_nanosecond(i128::from(i64::MAX)).unwrap();
    cat.record_snapshot(&s).await.unwrap();
    assert_eq!(cat.snapshot("big00001").await.unwrap(), Some(s.clone()));
    assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![s]);
}

async fn out_of_range_values_are_refused(cat: &dyn Catalog) {
    let mut s = snap("offsite", "huge0001", "orders", 10);
    s.bytes_read = i64::MAX as u64 + 1;
    let err = cat.record_snapshot(&s).await.expect_err("u64 above i64::MAX");
    assert!(
        matches!(
            err,
            CatalogError::OutOfRange {
                field: "bytes_read",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("fix:"), "{err}");

    let mut s = snap("offsite", "late0001", "orders", 10);
    s.finished_at = "2300-01-01T00:00:00Z".parse().unwrap();
    let err = cat.record_snapshot(&s).await.expect_err("beyond 2262");
    assert!(
        matches!(
            err,
            CatalogError::OutOfRange {
                field: "finished_at",
                ..
            }
        ),
        "{err:?}"
    );

    let mut r = run(RunKind::Backup, "orders", 1, RunStatus::Ok);
    r.started_at = "1600-01-01T00:00:00Z".parse().unwrap();
    assert!(matches!(
        cat.record_run(&r).await,
        Err(CatalogError::OutOfRange {
            field: "started_at",
            ..
        })
    ));

    let mut s = snap("offsite", "", "orders", 10);
    assert!(matches!(
        cat.record_snapshot(&s).await,
        Err(CatalogError::InvalidRecord { .. })
    ));
    s.id = "ok000001".to_owned();
    s.repository = String::new();
    assert!(matches!(
        cat.record_snapshot(&s).await,
        Err(CatalogError::InvalidRecord { .. })
    ));

    assert!(cat.snapshots(&all()).await.unwrap().is_empty());
    assert!(cat.runs(&RunFilter::default()).await.unwrap().is_empty());
}

async fn reopen_keeps_data_and_migrates_idempotently(target: &CatalogTarget) {
    let s = snap("offsite", "keep0001", "orders", 10);
    let mut r = run(RunKind::Backup, "orders", 10, RunStatus::Ok);
    let d = drill_run(
        "20261124T030000Z-1a2b3c4d",
        "nightly",
        "orders",
        10,
        DrillVerdict::SlaBreach,
    );
    {
        let cat = catalog::open(target).await.expect("first open");
        cat.record_snapshot(&s).await.unwrap();
        r.id = Some(cat.record_run(&r).await.unwrap());
        cat.record_drill_run(&d).await.unwrap();
        cat.close().await;
    }
    // Re-opening runs the migrations again: they must be a no-op and keep everything.
    for _ in 0..2 {
        let cat = catalog::open(target).await.expect("re-open");
        assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![s.clone()]);
        assert_eq!(cat.runs(&RunFilter::default()).await.unwrap(), vec![r.clone()]);
        assert_eq!(
            cat.drill_runs(&DrillRunFilter::default()).await.unwrap(),
            vec![d.clone()]
        );
        cat.close().await;
    }
    // New runs keep getting new ids after a re-open.
    let cat = catalog::open(target).await.unwrap();
    let fresh = RunRecord { id: None, ..r.clone() };
    let next = cat.record_run(&fresh).await.unwrap();
    assert_ne!(Some(next), r.id);
    cat.close().await;
}

async fn concurrent_first_open(target: &CatalogTarget) {
    // Several processes (CLI and daemon, or several daemons) may create the catalog at once.
    let opens = (0..4).map(|_| catalog::open(target));
    let catalogs: Vec<Box<dyn Catalog>> = futures::future::join_all(opens)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every concurrent open succeeds");
    for (i, cat) in catalogs.iter().enumerate() {
        let s = snap("offsite", &format!("conc{i:04}"), "orders", i as i64);
        cat.record_snapshot(&s).await.unwrap();
    }
    assert_eq!(catalogs[0].snapshots(&all()).await.unwrap().len(), 4);
    for cat in catalogs {
        cat.close().await;
    }
}

async fn drill_run_round_trip_every_field(cat: &dyn Catalog) {
    let mut full = drill_run(
        "20261124T030000Z-1a2b3c4d",
        "orders-nightly",
        "orders",
        10,
        DrillVerdict::Pass,
    );
    // Values that a lossy float or timestamp path would change.
    full.rto_seconds = Some(0.1 + 0.2);
    full.rpo_seconds = Some(1e-9);
    full.sla_rto_seconds = Some(f64::MAX);
    full.sla_rpo_seconds = Some(0.0);
    full.detail = Some("tabs\tand\nnewlines, quotes ' \" and ünïcödé ✓".to_owned());
    full.evidence = json!({
        "run_id": full.id,
        "phases": [
            { "name": "select", "seconds": 0.004_2 },
            { "name": "restore", "seconds": 81.125, "bytes": 5_000_000_000u64 },
            { "name": "checks", "seconds": 2.125 },
        ],
        "checks": [
            { "name": "row counts", "status": "pass", "expected": 34_567, "actual": 34_567 },
            { "name": "fingerprint", "status": "pass", "tables": { "public.orders": "9f86d081", "public.users": null } },
        ],
        "numbers": [0, -1, u64::MAX, i64::MIN, 0.5, -2.5e-300, 1.0e15, 123_456.789, 1.5e300],
        "flags": [true, false, null],
        "text": "tabs\tand\nnewlines, quotes ' \" \\ and ünïcödé ✓ 日本",
        "empty": { "object": {}, "array": [], "string": "" },
        "nested": [[[[{ "deep": [1, [2, [3]]] }]]]],
    });
    // Nothing optional set, and evidence that is JSON null (not SQL NULL).
    let sparse = DrillRunRecord {
        id: "20261124T040000Z-00000000".to_owned(),
        drill: "orders-nightly".to_owned(),
        source: "orders".to_owned(),
        repository: "offsite".to_owned(),
        snapshot_id: None,
        started_at: ts(1_795_000_020, 0),
        finished_at: ts(1_795_000_020, 1),
        verdict: DrillVerdict::Error,
        rto_seconds: None,
        rpo_seconds: None,
        sla_rto_seconds: None,
        sla_rpo_seconds: None,
        detail: None,
        evidence: serde_json::Value::Null,
    };
    let fail = drill_run(
        "20261124T050000Z-ffffffff",
        "users-weekly",
        "users",
        30,
        DrillVerdict::Fail,
    );
    let mut breach = drill_run(
        "20261124T060000Z-abcdef01",
        "users-weekly",
        "users",
        40,
        DrillVerdict::SlaBreach,
    );
    breach.evidence = json!("just a string");
    for r in [&full, &sparse, &fail, &breach] {
        cat.record_drill_run(r).await.expect("record drill run");
    }
    // Whole-struct equality: every field, floats to the bit, timestamps to the nanosecond.
    let got = cat.drill_runs(&DrillRunFilter::default()).await.unwrap();
    assert_eq!(got, vec![breach, fail, sparse, full.clone()]);
    let back = &got[3];
    assert_eq!(back.rto_seconds.unwrap().to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(back.evidence["numbers"][2], json!(u64::MAX));
    assert_eq!(back.evidence["numbers"][3], json!(i64::MIN));
    assert!(back.evidence["numbers"][4].is_f64());
}

async fn drill_runs_newest_first(cat: &dyn Catalog) {
    // Recorded out of order; "c" and "d" start at the same instant, so id breaks the tie.
    for (id, started) in [("b", 20), ("a", 10), ("d", 30), ("e", 40), ("c", 30)] {
        let mut r = drill_run(&format!("run-{id}"), "nightly", "orders", started, DrillVerdict::Pass);
        // Ordered by start, not by finish: "a" finishes last.
        if id == "a" {
            r.finished_at = ts(1_796_000_000, 0);
        }
        cat.record_drill_run(&r).await.unwrap();
    }
    let got = drill_ids(&cat.drill_runs(&DrillRunFilter::default()).await.unwrap());
    assert_eq!(got, ["run-e", "run-d", "run-c", "run-b", "run-a"]);

    // Nanoseconds count: one nanosecond later is newer.
    let mut later = drill_run("run-0", "nightly", "orders", 40, DrillVerdict::Pass);
    later.started_at = ts(1_795_000_040, 123_456_790);
    cat.record_drill_run(&later).await.unwrap();
    assert_eq!(
        drill_ids(&cat.drill_runs(&DrillRunFilter::default()).await.unwrap())[0],
        "run-0"
    );
}

async fn drill_runs_filter_and_limit(cat: &dyn Catalog) {
    for (id, drill, source, started) in [
        ("o1", "orders-nightly", "orders", 10),
        ("o2", "orders-nightly", "orders", 20),
        ("o3", "orders-weekly", "orders", 30),
        ("u1", "users-nightly", "users", 15),
        ("u2", "users-nightly", "users", 25),
        // A drill may be moved to another source; the history keeps what each run used.
        ("m1", "orders-nightly", "orders-replica", 35),
    ] {
        cat.record_drill_run(&drill_run(id, drill, source, started, DrillVerdict::Pass))
            .await
            .unwrap();
    }
    let list = |drill: Option<&str>, source: Option<&str>, limit: Option<u32>| {
        let filter = DrillRunFilter {
            drill: drill.map(str::to_owned),
            source: source.map(str::to_owned),
            limit,
        };
        async move { drill_ids(&cat.drill_runs(&filter).await.expect("list drill runs")) }
    };
    assert_eq!(list(Some("orders-nightly"), None, None).await, ["m1", "o2", "o1"]);
    assert_eq!(list(None, Some("orders"), None).await, ["o3", "o2", "o1"]);
    assert_eq!(list(Some("orders-nightly"), Some("orders"), None).await, ["o2", "o1"]);
    assert_eq!(list(Some("orders-nightly"), Some("orders"), Some(1)).await, ["o2"]);
    assert_eq!(list(None, Some("users"), Some(10)).await, ["u2", "u1"]);
    assert_eq!(list(None, None, Some(3)).await, ["m1", "o3", "u2"]);
    assert_eq!(list(None, None, None).await.len(), 6);
    assert!(list(None, None, Some(0)).await.is_empty());
    assert!(list(Some("users-nightly"), Some("orders"), None).await.is_empty());
    assert!(list(Some("nope"), None, None).await.is_empty());
    // Exact matches only: no prefix or wildcard matching.
    assert!(list(Some("orders"), None, None).await.is_empty());
    assert!(list(Some("orders-%"), None, None).await.is_empty());
}

async fn drill_run_replaced_by_id(cat: &dyn Catalog) {
    let first = drill_run(
        "20261124T030000Z-1a2b3c4d",
        "nightly",
        "orders",
        10,
        DrillVerdict::Error,
    );
    let other = drill_run("20261124T020000Z-99999999", "nightly", "orders", 5, DrillVerdict::Pass);
    cat.record_drill_run(&first).await.unwrap();
    cat.record_drill_run(&other).await.unwrap();

    // Re-imported evidence: every column replaced, including Some -> None and the start time.
    let replaced = DrillRunRecord {
        id: first.id.clone(),
        drill: "nightly-v2".to_owned(),
        source: "orders-replica".to_owned(),
        repository: "cold".to_owned(),
        snapshot_id: None,
        started_at: ts(1_795_000_001, 1),
        finished_at: ts(1_795_000_002, 2),
        verdict: DrillVerdict::SlaBreach,
        rto_seconds: Some(1_234.5),
        rpo_seconds: None,
        sla_rto_seconds: Some(600.0),
        sla_rpo_seconds: None,
        detail: None,
        evidence: json!({ "reimported": true }),
    };
    cat.record_drill_run(&replaced).await.unwrap();
    let runs = cat.drill_runs(&DrillRunFilter::default()).await.unwrap();
    // One row per id, and the new start time decides the order.
    assert_eq!(runs, vec![other.clone(), replaced.clone()]);

    // Replacing with an identical record changes nothing.
    cat.record_drill_run(&replaced).await.unwrap();
    assert_eq!(
        cat.drill_runs(&DrillRunFilter::default()).await.unwrap(),
        vec![other, replaced]
    );
}

async fn drill_run_invalid_values_are_refused(cat: &dyn Catalog) {
    let good = drill_run("run-1", "nightly", "orders", 10, DrillVerdict::Pass);
    let refused = |r: DrillRunRecord| async move { cat.record_drill_run(&r).await.expect_err("must be refused") };

    for bad in [-1.0, -f64::MIN_POSITIVE, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for name in ["rto_seconds", "rpo_seconds", "sla_rto_seconds", "sla_rpo_seconds"] {
            let mut r = good.clone();
            let field = match name {
                "rto_seconds" => &mut r.rto_seconds,
                "rpo_seconds" => &mut r.rpo_seconds,
                "sla_rto_seconds" => &mut r.sla_rto_seconds,
                _ => &mut r.sla_rpo_seconds,
            };
            *field = Some(bad);
            let err = refused(r).await;
            let right = matches!(&err, CatalogError::OutOfRange { field, .. } if *field == name);
            assert!(right, "{name} = {bad}: {err:?}");
            assert!(err.to_string().contains("fix:"), "{err}");
        }
    }

    let mut r = good.clone();
    r.finished_at = "2300-01-01T00:00:00Z".parse().unwrap();
    let err = refused(r).await;
    assert!(
        matches!(
            err,
            CatalogError::OutOfRange {
                field: "finished_at",
                ..
            }
        ),
        "{err:?}"
    );

    let mut r = good.clone();
    r.id = String::new();
    assert!(matches!(refused(r).await, CatalogError::InvalidRecord { .. }));

    // U+0000 anywhere in the evidence: PostgreSQL's JSONB cannot hold it, so neither backend takes it.
    for evidence in [
        json!({ "checks": [{ "output": "a\u{0}b" }] }),
        json!({ "key\u{0}": 1 }),
        json!("\u{0}"),
    ] {
        let mut r = good.clone();
        r.evidence = evidence;
        let err = refused(r).await;
        assert!(matches!(err, CatalogError::InvalidRecord { .. }), "{err:?}");
        assert!(
            err.to_string().contains("U+0000") && err.to_string().contains("fix:"),
            "{err}"
        );
    }

    assert!(cat.drill_runs(&DrillRunFilter::default()).await.unwrap().is_empty());
    // Nothing was left half-written: the good record still goes in.
    cat.record_drill_run(&good).await.unwrap();
    assert_eq!(cat.drill_runs(&DrillRunFilter::default()).await.unwrap(), vec![good]);
}

async fn drill_runs_migration_applies_on_top_of_schema_1(target: &CatalogTarget) {
    // A catalog as the lifeboat before drill runs left it: schema 1 only, with some history.
    let s = snap("offsite", "keep0001", "orders", 10);
    let r = run(RunKind::Backup, "orders", 10, RunStatus::Ok);
    let mut raw = Raw::connect(target).await;
    raw.migrate_to(1).await;
    assert_eq!(raw.applied_migrations().await, [1]);
    assert!(raw.execute("SELECT count(*) FROM drill_runs".into()).await.is_err());
    raw.execute(snapshot_insert(&s)).await.unwrap();
    raw.execute(format!(
        "INSERT INTO runs (kind, source, repository, snapshot_id, started_at_ns, finished_at_ns, status, detail) \
         VALUES ('backup', 'orders', 'offsite', 'snap-10', {}, {}, 'ok', '{}')",
        r.started_at.as_nanosecond(),
        r.finished_at.as_nanosecond(),
        r.detail.as_deref().unwrap(),
    ))
    .await
    .unwrap();
    raw.close().await;

    // Opening applies 0002 (and only that), keeping what was there.
    let cat = catalog::open(target).await.expect("open a schema-1 catalog");
    assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![s.clone()]);
    let runs = cat.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(
        runs,
        vec![RunRecord {
            id: runs[0].id,
            ..r.clone()
        }]
    );
    assert!(cat.drill_runs(&DrillRunFilter::default()).await.unwrap().is_empty());
    let d = drill_run("20261124T030000Z-1a2b3c4d", "nightly", "orders", 10, DrillVerdict::Pass);
    cat.record_drill_run(&d).await.unwrap();
    cat.close().await;

    let mut raw = Raw::connect(target).await;
    assert_eq!(raw.applied_migrations().await, [1, 2, 3, 4]);
    raw.close().await;

    // And again: nothing more to apply, nothing lost.
    let cat = catalog::open(target).await.expect("re-open");
    assert_eq!(cat.snapshots(&all()).await.unwrap(), vec![s]);
    assert_eq!(cat.drill_runs(&DrillRunFilter::default()).await.unwrap(), vec![d]);
    cat.close().await;
}

async fn unknown_drill_verdict_is_refused(target: &CatalogTarget) {
    let cat = catalog::open(target).await.unwrap();
    cat.close().await;
    // As a newer lifeboat with another verdict would have written it.
    let mut raw = Raw::connect(target).await;
    raw.execute(
        "INSERT INTO drill_runs (id, drill, source, repository, started_at_ns, finished_at_ns, verdict, \
         evidence) VALUES ('run-new', 'nightly', 'orders', 'offsite', 0, 1, 'skipped', '{}')"
            .into(),
    )
    .await
    .unwrap();
    raw.close().await;
    let cat = catalog::open(target).await.unwrap();
    let err = cat
        .drill_runs(&DrillRunFilter::default())
        .await
        .expect_err("unknown verdict");
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err:?}");
    assert!(
        msg.contains("run-new") && msg.contains("\"skipped\"") && msg.contains("fix: upgrade lifeboat"),
        "{msg}"
    );
    cat.close().await;
}

// ---------------------------------------------------------------------------------------------
// Backend-specific: what one backend does that the other has no equivalent for.

#[tokio::test]
async fn sqlite_creates_directories_and_uses_wal() {
    let fx = Fixture::sqlite();
    let CatalogTarget::Sqlite(path) = &fx.target else {
        unreachable!()
    };
    assert!(!path.parent().unwrap().exists());
    let cat = fx.open().await;
    assert!(path.is_file());
    cat.close().await;
    // journal_mode=WAL is a property of the file: a fresh connection sees it.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
}

#[tokio::test]
async fn sqlite_unopenable_path_says_where_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let target = CatalogTarget::Sqlite(dir.path().to_owned());
    let err = catalog::open(&target).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::OpenSqlite { .. }), "{err:?}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("fix:"), "{msg}");

    // A file where the parent directory should be.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let target = CatalogTarget::Sqlite(blocker.join("catalog.db"));
    let msg = catalog::open(&target).await.err().expect("must fail").to_string();
    assert!(msg.contains("cannot create directory") && msg.contains("fix:"), "{msg}");
}

#[tokio::test]
async fn postgres_password_never_shown() {
    const SECRET: &str = "Sup3r-Secret_pw";
    // Unreachable server: nothing listens on port 1.
    let target = CatalogTarget::Postgres(format!("postgres://lifeboat:{SECRET}@127.0.0.1:1/catalog"));
    for shown in [format!("{target}"), format!("{target:?}")] {
        assert!(!shown.contains(SECRET) && shown.contains("***"), "{shown}");
    }
    let err = catalog::open(&target).await.err().expect("must fail");
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::Unreachable { .. }), "{err:?}");
    assert!(!msg.contains(SECRET) && !format!("{err:?}").contains(SECRET), "{msg}");
    assert!(msg.contains("127.0.0.1:1") && msg.contains("fix:"), "{msg}");
    // The cause itself, not just a pool timeout.
    assert!(msg.to_lowercase().contains("refused"), "{msg}");

    // Reachable server, missing database: the server's own error, still without the password.
    let mut url = url::Url::parse(&pg_admin_url()).unwrap();
    url.set_password(Some(SECRET)).unwrap();
    url.set_path("/lifeboat_cat_does_not_exist");
    url.set_query(Some(&format!("password={SECRET}")));
    let err = catalog::open(&CatalogTarget::Postgres(url.to_string()))
        .await
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(msg.contains("lifeboat_cat_does_not_exist"), "{msg}");
    assert!(!msg.contains(SECRET) && !format!("{err:?}").contains(SECRET), "{msg}");

    // Not a PostgreSQL URL at all.
    let err = catalog::open(&CatalogTarget::Postgres(format!("mysql://u:{SECRET}@h/db")))
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, CatalogError::InvalidUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[test]
fn drill_verdict_spellings() {
    let all = [
        (DrillVerdict::Pass, "pass"),
        (DrillVerdict::Fail, "fail"),
        (DrillVerdict::SlaBreach, "sla-breach"),
        (DrillVerdict::Error, "error"),
    ];
    for (verdict, spelling) in all {
        assert_eq!(verdict.as_str(), spelling);
        assert_eq!(verdict.to_string(), spelling);
        assert_eq!(spelling.parse::<DrillVerdict>(), Ok(verdict));
        // JSON and the database agree.
        assert_eq!(serde_json::to_value(verdict).unwrap(), json!(spelling));
        assert_eq!(
            serde_json::from_value::<DrillVerdict>(json!(spelling)).unwrap(),
            verdict
        );
    }
    let err = "SlaBreach".parse::<DrillVerdict>().unwrap_err();
    assert!(err.contains("\"SlaBreach\"") && err.contains("sla-breach"), "{err}");
}

#[tokio::test]
async fn postgres_evidence_is_queryable_jsonb() {
    let fx = Fixture::postgres().await;
    let outcome = AssertUnwindSafe(async {
        let cat = fx.open().await;
        let mut r = drill_run("run-1", "nightly", "orders", 10, DrillVerdict::Fail);
        r.evidence = json!({ "checks": [{ "name": "rows", "status": "fail" }], "small": 1.5e-7, "whole": 1e16 });
        cat.record_drill_run(&r).await.unwrap();
        // JSONB keeps the meaning, not the spelling: serde_json writes 1e16 as "1e16", JSONB gives
        // it back as 10000000000000000, which serde_json reads as an integer (SQLite keeps the
        // text as written). Documented on DrillRunRecord::evidence.
        let back = cat.drill_runs(&DrillRunFilter::default()).await.unwrap().remove(0);
        assert_eq!(back.evidence["checks"], r.evidence["checks"]);
        assert_eq!(back.evidence["small"], json!(1.5e-7));
        assert_eq!(back.evidence["whole"], json!(10_000_000_000_000_000u64));
        cat.close().await;

        // The column is JSONB, so evidence can be queried in SQL.
        let Raw::Postgres(mut conn) = Raw::connect(&fx.target).await else {
            unreachable!()
        };
        let (kind, status): (String, String) = sqlx::query_as(
            "SELECT jsonb_typeof(evidence), evidence #>> '{checks,0,status}' FROM drill_runs WHERE id = 'run-1'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!((kind.as_str(), status.as_str()), ("object", "fail"));
        conn.close().await.unwrap();
    })
    .catch_unwind()
    .await;
    finish(fx, outcome).await;
}

// ---------------------------------------------------------------------------------------------
// Scheduled jobs: claims and leases

fn claim(job: &str, due: i64, owner: &str, now: i64, lease: i64) -> JobClaim {
    const T0: i64 = 1_795_000_000;
    JobClaim {
        job: job.into(),
        due: ts(T0 + due, 0),
        owner: owner.into(),
        now: ts(T0 + now, 0),
        lease_until: ts(T0 + now + lease, 0),
    }
}

fn done(job: &str, owner: &str, at: i64, outcome: &str) -> JobDone {
    JobDone {
        job: job.into(),
        owner: owner.into(),
        finished_at: ts(1_795_000_000 + at, 0),
        outcome: outcome.into(),
        detail: Some(format!("{outcome} at {at}")),
    }
}

async fn job_occurrence_is_claimed_once(cat: &dyn Catalog) {
    assert!(cat.claim_job(&claim("backup:orders", 100, "a", 100, 60)).await.unwrap());
    // Another daemon, same occurrence: refused, even after the first run finished.
    assert!(!cat.claim_job(&claim("backup:orders", 100, "b", 101, 60)).await.unwrap());
    cat.finish_job(&done("backup:orders", "a", 110, "ok")).await.unwrap();
    assert!(!cat.claim_job(&claim("backup:orders", 100, "b", 111, 60)).await.unwrap());
    // An older occurrence is never run after a newer one.
    assert!(!cat.claim_job(&claim("backup:orders", 50, "b", 111, 60)).await.unwrap());
    // The next occurrence is free.
    assert!(cat.claim_job(&claim("backup:orders", 200, "b", 200, 60)).await.unwrap());
    // Another job is independent.
    assert!(cat.claim_job(&claim("verify:orders", 100, "a", 200, 60)).await.unwrap());

    let jobs = cat.jobs().await.unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
    assert_eq!(names, ["backup:orders", "verify:orders"]);
    let backup = &jobs[0];
    assert_eq!(backup.owner.as_deref(), Some("b"));
    assert_eq!(backup.last_due, Some(ts(1_795_000_200, 0)));
    assert_eq!(backup.last_outcome.as_deref(), Some("ok"), "the last finished run");
    assert_eq!(backup.last_finished, Some(ts(1_795_000_110, 0)));
}

async fn job_lease_blocks_overlap_until_it_expires(cat: &dyn Catalog) {
    assert!(cat.claim_job(&claim("drill:nightly", 100, "a", 100, 60)).await.unwrap());
    // The next occurrence comes while the first run still holds its lease: no overlap.
    assert!(!cat.claim_job(&claim("drill:nightly", 130, "b", 130, 60)).await.unwrap());
    // Renewing by the holder works, by anyone else does not.
    assert!(cat.renew_job("drill:nightly", "a", ts(1_795_000_250, 0)).await.unwrap());
    assert!(!cat.renew_job("drill:nightly", "b", ts(1_795_000_250, 0)).await.unwrap());
    assert!(!cat.claim_job(&claim("drill:nightly", 200, "b", 200, 60)).await.unwrap());
    // Daemon a dies: once its lease has expired, b takes the next occurrence.
    assert!(cat.claim_job(&claim("drill:nightly", 300, "b", 300, 60)).await.unwrap());
    // a comes back: it lost the lease and cannot renew it, and its late finish changes nothing.
    assert!(!cat.renew_job("drill:nightly", "a", ts(1_795_000_400, 0)).await.unwrap());
    cat.finish_job(&done("drill:nightly", "a", 305, "failed"))
        .await
        .unwrap();
    let job = cat.jobs().await.unwrap().remove(0);
    assert_eq!(job.owner.as_deref(), Some("b"));
    assert_eq!(job.last_outcome, None);
    cat.finish_job(&done("drill:nightly", "b", 310, "ok")).await.unwrap();
    let job = cat.jobs().await.unwrap().remove(0);
    assert_eq!((job.owner, job.lease_expires), (None, None));
    assert_eq!(job.last_outcome.as_deref(), Some("ok"));
}

async fn job_skip_is_reported_once(cat: &dyn Catalog) {
    let t = |s: i64| ts(1_795_000_000 + s, 0);
    assert!(cat.skip_job("prune:orders", t(100)).await.unwrap());
    assert!(
        !cat.skip_job("prune:orders", t(100)).await.unwrap(),
        "a second daemon does not report again"
    );
    assert!(!cat.claim_job(&claim("prune:orders", 100, "a", 150, 60)).await.unwrap());
    assert!(cat.claim_job(&claim("prune:orders", 200, "a", 200, 60)).await.unwrap());
    // Skipping while a run holds the lease moves the due time but keeps the run's lease.
    assert!(cat.skip_job("prune:orders", t(300)).await.unwrap());
    let job = cat.jobs().await.unwrap().remove(0);
    assert_eq!(job.owner.as_deref(), Some("a"));
    assert_eq!(job.last_due, Some(t(300)));
}

// ---- the control plane's tables

async fn audit_log_chains_every_entry_once_under_concurrent_appends(cat: &dyn Catalog) {
    let chain = |prev: &str, seq: i64, body: &str| format!("{prev}|{seq}|{body}").len().to_string() + body;
    let appends = (0..40).map(|i| {
        let body = format!("{{\"n\":{i}}}");
        let chain = &chain;
        async move { cat.append_audit(ts(1_700_000_000 + i, 0), &body, chain).await.unwrap() }
    });
    let rows = futures::future::join_all(appends).await;
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<_>>(),
        "one entry per append, numbered without gaps"
    );
    let stored = cat.audit(0, 1000).await.unwrap();
    assert_eq!(stored.len(), 40);
    assert_eq!(stored[0].prev_hash, lifeboat::catalog::GENESIS);
    for pair in stored.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "entry {} links to the one before",
            pair[1].seq
        );
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    for r in &stored {
        assert_eq!(r.hash, chain(&r.prev_hash, r.seq, &r.body), "hash of entry {}", r.seq);
    }
    assert_eq!(cat.audit(38, 10).await.unwrap().len(), 2);
    assert_eq!(cat.audit(0, 5).await.unwrap().len(), 5);
}

async fn approval_updates_are_compare_and_set(cat: &dyn Catalog) {
    use lifeboat::catalog::StoredApproval;
    let a = StoredApproval {
        id: "apr_1".into(),
        state: "pending".into(),
        version: 1,
        created_at: ts(1_700_000_000, 0),
        body: "{}".into(),
    };
    cat.insert_approval(&a).await.unwrap();
    assert!(cat.insert_approval(&a).await.is_err(), "ids are unique");
    let approved = StoredApproval {
        state: "approved".into(),
        version: 2,
        body: "{\"x\":1}".into(),
        ..a.clone()
    };
    assert!(cat.update_approval(&approved, 1).await.unwrap());
    // A second decider that read version 1 loses.
    let denied = StoredApproval {
        state: "denied".into(),
        version: 2,
        ..a.clone()
    };
    assert!(!cat.update_approval(&denied, 1).await.unwrap());
    assert_eq!(cat.approval("apr_1").await.unwrap().unwrap(), approved);
    assert_eq!(cat.approvals(Some("approved")).await.unwrap().len(), 1);
    assert!(cat.approvals(Some("pending")).await.unwrap().is_empty());
    assert_eq!(cat.approvals(None).await.unwrap().len(), 1);
    assert!(cat.approval("apr_2").await.unwrap().is_none());
}

async fn tokens_and_settings_round_trip(cat: &dyn Catalog) {
    use lifeboat::catalog::StoredToken;
    let t = StoredToken {
        id: "abc".into(),
        secret_hash: "00ff".into(),
        body: "{\"name\":\"alice\"}".into(),
    };
    cat.insert_token(&t).await.unwrap();
    assert!(cat.insert_token(&t).await.is_err(), "ids are unique");
    assert_eq!(cat.token("abc").await.unwrap().unwrap(), t);
    assert!(cat.update_token("abc", "{}").await.unwrap());
    assert!(!cat.update_token("nope", "{}").await.unwrap());
    assert_eq!(cat.tokens().await.unwrap()[0].body, "{}");

    cat.set_setting("retention:orders", Some("{\"a\":1}")).await.unwrap();
    cat.set_setting("retention:orders", Some("{\"a\":2}")).await.unwrap();
    cat.set_setting("disabled:route:x", Some("{}")).await.unwrap();
    assert_eq!(
        cat.settings().await.unwrap(),
        vec![
            ("disabled:route:x".to_string(), "{}".to_string()),
            ("retention:orders".to_string(), "{\"a\":2}".to_string()),
        ]
    );
    cat.set_setting("disabled:route:x", None).await.unwrap();
    assert_eq!(cat.settings().await.unwrap().len(), 1);
}
