//! Conversions between the public records and what both backends store.
//!
//! Both schemas use the same columns and the same types, so this is shared:
//! - unsigned counters are BIGINT (i64), converted with a check both ways;
//! - timestamps are BIGINT nanoseconds since the Unix epoch (UTC). That is jiff's own precision, so
//!   a record reads back exactly equal to what was written (PostgreSQL's timestamptz keeps only
//!   microseconds, and sqlx 0.9 has no jiff codec); integers also sort and compare the same way in
//!   both databases without any text-format or time-zone subtleties. The cost is a range of
//!   1677-09-21 to 2262-04-11, which is checked, and less readable raw SQL;
//! - durations are DOUBLE PRECISION / REAL seconds, finite and not negative (checked both ways);
//! - a drill run's evidence is JSONB on PostgreSQL and JSON text on SQLite, both read and written
//!   through sqlx's `Json`, after refusing U+0000 (which JSONB cannot hold) on both.

use jiff::Timestamp;

use sqlx::types::Json;

use super::{CatalogError, DrillRunRecord, DrillVerdict, RunKind, RunRecord, RunStatus, SnapshotRecord};

const U64_RANGE: &str = "integers from 0 to 9223372036854775807";
const TS_RANGE: &str = "times from 1677-09-21 to 2262-04-11 UTC";
const SECONDS_RANGE: &str = "finite numbers of seconds from 0 up";

/// The snapshot columns, in the order [`SnapshotParams`] binds them and [`SnapshotRow`] reads them.
macro_rules! snapshot_columns {
    () => {
        "repository, id, source, engine, started_at_ns, finished_at_ns, bytes_read, \
         bytes_stored, chunks, new_chunks, stream_sha256, consistent_point, server_version, \
         tool_version, table_count, row_count"
    };
}
pub(crate) use snapshot_columns;

/// The run columns, in the order [`RunRow`] reads them.
macro_rules! run_columns {
    () => {
        "id, kind, source, repository, snapshot_id, started_at_ns, finished_at_ns, status, detail"
    };
}
pub(crate) use run_columns;

/// The drill run columns, in the order the backends bind them and [`DrillRunRow`] reads them.
macro_rules! drill_run_columns {
    () => {
        "id, drill, source, repository, snapshot_id, started_at_ns, finished_at_ns, verdict, \
         rto_seconds, rpo_seconds, sla_rto_seconds, sla_rpo_seconds, detail, evidence"
    };
}
pub(crate) use drill_run_columns;

pub(crate) fn u64_to_db(field: &'static str, v: u64) -> Result<i64, CatalogError> {
    i64::try_from(v).map_err(|_| CatalogError::OutOfRange {
        field,
        value: v.to_string(),
        range: U64_RANGE,
    })
}

fn u64_from_db(target: &str, field: &str, v: i64) -> Result<u64, CatalogError> {
    u64::try_from(v).map_err(|_| CatalogError::corrupt(target, format!("{field} = {v} (negative)")))
}

pub(crate) fn ts_to_db(field: &'static str, ts: Timestamp) -> Result<i64, CatalogError> {
    i64::try_from(ts.as_nanosecond()).map_err(|_| CatalogError::OutOfRange {
        field,
        value: ts.to_string(),
        range: TS_RANGE,
    })
}

fn ts_from_db(target: &str, field: &str, ns: i64) -> Result<Timestamp, CatalogError> {
    // Every i64 of nanoseconds lies inside jiff's range; the error path is for completeness.
    Timestamp::from_nanosecond(i128::from(ns))
        .map_err(|e| CatalogError::corrupt(target, format!("{field} = {ns} ({e})")))
}

fn seconds_to_db(field: &'static str, v: Option<f64>) -> Result<Option<f64>, CatalogError> {
    match v {
        // NaN fails this test too; SQLite would store it as NULL.
        Some(s) if !(s.is_finite() && s >= 0.0) => Err(CatalogError::OutOfRange {
            field,
            value: s.to_string(),
            range: SECONDS_RANGE,
        }),
        _ => Ok(v),
    }
}

fn seconds_from_db(target: &str, field: &str, v: Option<f64>) -> Result<Option<f64>, CatalogError> {
    match v {
        Some(s) if !(s.is_finite() && s >= 0.0) => Err(CatalogError::corrupt(
            target,
            format!("{field} = {s} (not a finite number of seconds from 0 up)"),
        )),
        _ => Ok(v),
    }
}

/// Whether a JSON string or object key anywhere in `v` contains U+0000.
fn json_has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn non_empty(what: &'static str, v: &str) -> Result<(), CatalogError> {
    if v.is_empty() {
        return Err(CatalogError::InvalidRecord { what });
    }
    Ok(())
}

/// A snapshot's values, checked and converted, ready to bind in [`snapshot_columns`] order.
pub(crate) struct SnapshotParams<'a> {
    pub repository: &'a str,
    pub id: &'a str,
    pub source: &'a str,
    pub engine: &'a str,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub bytes_read: i64,
    pub bytes_stored: i64,
    pub chunks: i64,
    pub new_chunks: i64,
    pub stream_sha256: &'a str,
    pub consistent_point: Option<&'a str>,
    pub server_version: Option<&'a str>,
    pub tool_version: Option<&'a str>,
    pub table_count: i64,
    pub row_count: i64,
}

impl<'a> SnapshotParams<'a> {
    pub(crate) fn new(s: &'a SnapshotRecord) -> Result<Self, CatalogError> {
        // An empty id would match every prefix lookup; an empty repository breaks the key.
        non_empty("a snapshot with an empty id", &s.id)?;
        non_empty("a snapshot with an empty repository", &s.repository)?;
        Ok(SnapshotParams {
            repository: &s.repository,
            id: &s.id,
            source: &s.source,
            engine: &s.engine,
            started_at_ns: ts_to_db("started_at", s.started_at)?,
            finished_at_ns: ts_to_db("finished_at", s.finished_at)?,
            bytes_read: u64_to_db("bytes_read", s.bytes_read)?,
            bytes_stored: u64_to_db("bytes_stored", s.bytes_stored)?,
            chunks: u64_to_db("chunks", s.chunks)?,
            new_chunks: u64_to_db("new_chunks", s.new_chunks)?,
            stream_sha256: &s.stream_sha256,
            consistent_point: s.consistent_point.as_deref(),
            server_version: s.server_version.as_deref(),
            tool_version: s.tool_version.as_deref(),
            table_count: u64_to_db("tables", s.tables)?,
            row_count: u64_to_db("rows", s.rows)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SnapshotRow {
    repository: String,
    id: String,
    source: String,
    engine: String,
    started_at_ns: i64,
    finished_at_ns: i64,
    bytes_read: i64,
    bytes_stored: i64,
    chunks: i64,
    new_chunks: i64,
    stream_sha256: String,
    consistent_point: Option<String>,
    server_version: Option<String>,
    tool_version: Option<String>,
    table_count: i64,
    row_count: i64,
}

impl SnapshotRow {
    pub(crate) fn into_record(self, target: &str) -> Result<SnapshotRecord, CatalogError> {
        let n = |field: &str, v: i64| u64_from_db(target, field, v);
        Ok(SnapshotRecord {
            started_at: ts_from_db(target, "started_at_ns", self.started_at_ns)?,
            finished_at: ts_from_db(target, "finished_at_ns", self.finished_at_ns)?,
            bytes_read: n("bytes_read", self.bytes_read)?,
            bytes_stored: n("bytes_stored", self.bytes_stored)?,
            chunks: n("chunks", self.chunks)?,
            new_chunks: n("new_chunks", self.new_chunks)?,
            tables: n("table_count", self.table_count)?,
            rows: n("row_count", self.row_count)?,
            id: self.id,
            source: self.source,
            repository: self.repository,
            engine: self.engine,
            stream_sha256: self.stream_sha256,
            consistent_point: self.consistent_point,
            server_version: self.server_version,
            tool_version: self.tool_version,
        })
    }
}

/// A run's values, checked and converted, ready to bind (everything but `id`).
pub(crate) struct RunParams<'a> {
    pub kind: &'static str,
    pub source: Option<&'a str>,
    pub repository: Option<&'a str>,
    pub snapshot_id: Option<&'a str>,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub status: &'static str,
    pub detail: Option<&'a str>,
}

impl<'a> RunParams<'a> {
    pub(crate) fn new(r: &'a RunRecord) -> Result<Self, CatalogError> {
        Ok(RunParams {
            kind: r.kind.as_str(),
            source: r.source.as_deref(),
            repository: r.repository.as_deref(),
            snapshot_id: r.snapshot_id.as_deref(),
            started_at_ns: ts_to_db("started_at", r.started_at)?,
            finished_at_ns: ts_to_db("finished_at", r.finished_at)?,
            status: r.status.as_str(),
            detail: r.detail.as_deref(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: i64,
    kind: String,
    source: Option<String>,
    repository: Option<String>,
    snapshot_id: Option<String>,
    started_at_ns: i64,
    finished_at_ns: i64,
    status: String,
    detail: Option<String>,
}

impl RunRow {
    pub(crate) fn into_record(self, target: &str) -> Result<RunRecord, CatalogError> {
        // Kinds and statuses are plain TEXT without a CHECK constraint, so that a newer lifeboat
        // can add one without a table rebuild; an older one reading it says so, not guesses.
        let newer = |what: &str, v: &str| CatalogError::Corrupt {
            target: target.to_owned(),
            what: format!("run {} with {what} {v:?}, unknown to this lifeboat", self.id),
            fix: "upgrade lifeboat to the version that wrote this catalog",
        };
        let kind: RunKind = self.kind.parse().map_err(|_| newer("kind", &self.kind))?;
        let status: RunStatus = self.status.parse().map_err(|_| newer("status", &self.status))?;
        Ok(RunRecord {
            id: Some(self.id),
            kind,
            source: self.source,
            repository: self.repository,
            snapshot_id: self.snapshot_id,
            started_at: ts_from_db(target, "started_at_ns", self.started_at_ns)?,
            finished_at: ts_from_db(target, "finished_at_ns", self.finished_at_ns)?,
            status,
            detail: self.detail,
        })
    }
}

/// A drill run's values, checked and converted, ready to bind in [`drill_run_columns`] order.
pub(crate) struct DrillRunParams<'a> {
    pub id: &'a str,
    pub drill: &'a str,
    pub source: &'a str,
    pub repository: &'a str,
    pub snapshot_id: Option<&'a str>,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub verdict: &'static str,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub sla_rto_seconds: Option<f64>,
    pub sla_rpo_seconds: Option<f64>,
    pub detail: Option<&'a str>,
    pub evidence: Json<&'a serde_json::Value>,
}

impl<'a> DrillRunParams<'a> {
    pub(crate) fn new(r: &'a DrillRunRecord) -> Result<Self, CatalogError> {
        // The id is the key: an empty one would be one row that every id-less run overwrites.
        non_empty("a drill run with an empty id", &r.id)?;
        // JSONB cannot hold U+0000; refused on SQLite too, so that both backends agree.
        if json_has_nul(&r.evidence) {
            return Err(CatalogError::InvalidRecord {
                what: "a drill run whose evidence contains the character U+0000",
            });
        }
        Ok(DrillRunParams {
            id: &r.id,
            drill: &r.drill,
            source: &r.source,
            repository: &r.repository,
            snapshot_id: r.snapshot_id.as_deref(),
            started_at_ns: ts_to_db("started_at", r.started_at)?,
            finished_at_ns: ts_to_db("finished_at", r.finished_at)?,
            verdict: r.verdict.as_str(),
            rto_seconds: seconds_to_db("rto_seconds", r.rto_seconds)?,
            rpo_seconds: seconds_to_db("rpo_seconds", r.rpo_seconds)?,
            sla_rto_seconds: seconds_to_db("sla_rto_seconds", r.sla_rto_seconds)?,
            sla_rpo_seconds: seconds_to_db("sla_rpo_seconds", r.sla_rpo_seconds)?,
            detail: r.detail.as_deref(),
            evidence: Json(&r.evidence),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DrillRunRow {
    id: String,
    drill: String,
    source: String,
    repository: String,
    snapshot_id: Option<String>,
    started_at_ns: i64,
    finished_at_ns: i64,
    verdict: String,
    rto_seconds: Option<f64>,
    rpo_seconds: Option<f64>,
    sla_rto_seconds: Option<f64>,
    sla_rpo_seconds: Option<f64>,
    detail: Option<String>,
    evidence: Json<serde_json::Value>,
}

impl DrillRunRow {
    pub(crate) fn into_record(self, target: &str) -> Result<DrillRunRecord, CatalogError> {
        // Like run kinds: plain TEXT without a CHECK, so a newer lifeboat may add a verdict.
        let verdict: DrillVerdict = self.verdict.parse().map_err(|_| CatalogError::Corrupt {
            target: target.to_owned(),
            what: format!(
                "drill run {} with verdict {:?}, unknown to this lifeboat",
                self.id, self.verdict
            ),
            fix: "upgrade lifeboat to the version that wrote this catalog",
        })?;
        let secs = |field: &str, v: Option<f64>| seconds_from_db(target, field, v);
        Ok(DrillRunRecord {
            started_at: ts_from_db(target, "started_at_ns", self.started_at_ns)?,
            finished_at: ts_from_db(target, "finished_at_ns", self.finished_at_ns)?,
            rto_seconds: secs("rto_seconds", self.rto_seconds)?,
            rpo_seconds: secs("rpo_seconds", self.rpo_seconds)?,
            sla_rto_seconds: secs("sla_rto_seconds", self.sla_rto_seconds)?,
            sla_rpo_seconds: secs("sla_rpo_seconds", self.sla_rpo_seconds)?,
            verdict,
            id: self.id,
            drill: self.drill,
            source: self.source,
            repository: self.repository,
            snapshot_id: self.snapshot_id,
            detail: self.detail,
            evidence: self.evidence.0,
        })
    }
}

/// `LIMIT` value for an optional limit. SQLite reads a negative limit as "no limit"; PostgreSQL
/// reads NULL that way, so the PostgreSQL backend binds the `Option` directly.
pub(crate) fn sqlite_limit(limit: Option<u32>) -> i64 {
    limit.map_or(-1, i64::from)
}

/// Checks an id or prefix before any lookup: an exact id of any length is fine, but a prefix
/// needs [`super::MIN_PREFIX`] characters, and the empty string is never meant.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), CatalogError> {
    if prefix.chars().count() < super::MIN_PREFIX {
        return Err(CatalogError::PrefixTooShort {
            prefix: prefix.to_owned(),
            min: super::MIN_PREFIX,
        });
    }
    Ok(())
}

/// Turns the distinct ids matching a prefix (sorted, at most `MAX_CANDIDATES + 1`) into the one id
/// meant, none, or the ambiguity error.
pub(crate) fn pick_candidate(prefix: &str, mut ids: Vec<String>) -> Result<Option<String>, CatalogError> {
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.pop()),
        _ => Err(CatalogError::AmbiguousPrefix {
            prefix: prefix.to_owned(),
            candidates: ids,
        }),
    }
}

/// Checks a rebuild's input before the transaction starts, so that a bad record never costs the
/// existing rows. Duplicate ids are left to the primary key, inside the transaction.
pub(crate) fn check_rebuild_input(repository: &str, snapshots: &[SnapshotRecord]) -> Result<(), CatalogError> {
    non_empty("a rebuild of a repository with an empty name", repository)?;
    for s in snapshots {
        if s.repository != repository {
            return Err(CatalogError::RepositoryMismatch {
                id: s.id.clone(),
                expected: repository.to_owned(),
                found: s.repository.clone(),
            });
        }
        SnapshotParams::new(s)?;
    }
    Ok(())
}

/// Whether a failed insert is a primary-key clash (the same id twice in one rebuild).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The job columns, in the order [`JobRow`] reads them.
macro_rules! job_columns {
    () => {
        "job, last_due_ns, owner, lease_expires_ns, last_started_ns, last_finished_ns, last_outcome, last_detail"
    };
}
pub(crate) use job_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    job: String,
    last_due_ns: Option<i64>,
    owner: Option<String>,
    lease_expires_ns: Option<i64>,
    last_started_ns: Option<i64>,
    last_finished_ns: Option<i64>,
    last_outcome: Option<String>,
    last_detail: Option<String>,
}

impl JobRow {
    pub(crate) fn into_record(self, target: &str) -> Result<super::JobState, CatalogError> {
        let ts = |field: &str, v: Option<i64>| v.map(|ns| ts_from_db(target, field, ns)).transpose();
        Ok(super::JobState {
            last_due: ts("last_due_ns", self.last_due_ns)?,
            lease_expires: ts("lease_expires_ns", self.lease_expires_ns)?,
            last_started: ts("last_started_ns", self.last_started_ns)?,
            last_finished: ts("last_finished_ns", self.last_finished_ns)?,
            job: self.job,
            owner: self.owner,
            last_outcome: self.last_outcome,
            last_detail: self.last_detail,
        })
    }
}
