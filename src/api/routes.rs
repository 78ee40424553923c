//! The `/api/v1` routes. Each handler names its operation and source for the audit entry, then
//! leaves the rules to [`ControlPlane`](crate::control::ControlPlane).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiState, MAX_BODY, OPENAPI, OPERATION_TIMEOUT, READ_TIMEOUT, Reply, bad_body, bad_bytes, bad_query, call,
    not_found,
};
use crate::catalog::{DrillRunFilter, SnapshotFilter};
use crate::control::{ApprovalState, ControlError, Decision, Operation, Outcome, Principal, RestoreSpec, Scope};
use crate::repo::retention::RetentionPolicy;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/sources/{name}/retention", put(set_retention))
        .route("/api/v1/snapshots", get(snapshots))
        .route("/api/v1/snapshots/{id}", delete(delete_snapshot))
        .route("/api/v1/backups", post(backup))
        .route("/api/v1/drills", get(drills))
        .route("/api/v1/drills/{name}/runs", get(drill_runs).post(run_drill))
        .route("/api/v1/sla", get(sla))
        .route("/api/v1/fate", get(fate))
        .route("/api/v1/restores", post(restore))
        .route("/api/v1/prune", post(prune))
        .route("/api/v1/disable", post(disable))
        .route("/api/v1/enable", post(enable))
        .route("/api/v1/repositories/{name}", delete(remove_repository))
        .route("/api/v1/approvals", get(approvals))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/deny", post(deny))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/{*rest}", any(not_found))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ControlError> {
    b.map(|Json(v)| v).map_err(bad_body)
}

fn forbidden(
    p: &Principal,
    op: Operation,
    what: &str,
    resources: &[crate::control::Resource<'_>],
) -> Result<(), ControlError> {
    p.check(op, what, resources).map_err(ControlError::Forbidden)
}

// ---- sources and snapshots

async fn sources(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    call(&st, &headers, "GET /api/v1/sources".into(), Operation::Read, None, READ_TIMEOUT, async move |st, p| {
        forbidden(&p, Operation::Read, "list sources", &[])?;
        let plane = st.plane();
        let settings = plane.settings().await?;
        let list: Vec<serde_json::Value> = st
            .ctx
            .config
            .sources
            .values()
            .filter(|s| plane.resource(&s.name).is_ok_and(|r| p.scope.covers(r)))
            .map(|s| {
                json!({
                    "name": s.name,
                    "kind": s.kind.as_str(),
                    "environment": s.environment,
                    "repository": s.repository,
                    "retention": settings.retention_of(&s.name, s.retention.as_ref()),
                    "disabled_jobs": settings.disabled.iter().filter(|d| d.ends_with(&format!(":{}", s.name))).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(Reply::ok(json!({ "sources": list })))
    })
    .await
}

#[derive(Deserialize)]
struct SnapshotQuery {
    source: Option<String>,
    repository: Option<String>,
    limit: Option<u32>,
}

async fn snapshots(
    State(st): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<SnapshotQuery>, QueryRejection>,
) -> Response {
    let source = q.as_ref().ok().and_then(|Query(q)| q.source.clone());
    call(
        &st,
        &headers,
        "GET /api/v1/snapshots".into(),
        Operation::Read,
        source,
        READ_TIMEOUT,
        async move |st, p| {
            let Query(q) = q.map_err(bad_query)?;
            let filter = SnapshotFilter {
                source: q.source,
                repository: q.repository,
                limit: Some(q.limit.unwrap_or(100).min(10_000)),
            };
            let list = st.plane().snapshots(&p, &filter).await?;
            Ok(Reply::ok(json!({ "snapshots": list })))
        },
    )
    .await
}

#[derive(Deserialize)]
struct RepositoryQuery {
    repository: Option<String>,
}

async fn delete_snapshot(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<RepositoryQuery>, QueryRejection>,
) -> Response {
    let action = format!("DELETE /api/v1/snapshots/{id}");
    call(
        &st,
        &headers,
        action,
        Operation::Delete,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let Query(q) = q.map_err(bad_query)?;
            let a = st.plane().delete_snapshot(&p, &id, q.repository.as_deref()).await?;
            Ok(Reply::Pending(a, None))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    source: String,
}

async fn backup(
    State(st): State<ApiState>,
    headers: HeaderMap,
    b: Result<Json<BackupBody>, JsonRejection>,
) -> Response {
    let source = b.as_ref().ok().map(|Json(b)| b.source.clone());
    call(
        &st,
        &headers,
        "POST /api/v1/backups".into(),
        Operation::Backup,
        source,
        OPERATION_TIMEOUT,
        async move |st, p| {
            let b = body(b)?;
            let r = st.plane().resource(&b.source)?;
            forbidden(&p, Operation::Backup, &format!("back up {}", b.source), &[r])?;
            st.plane()
                .repository_in_use(&st.ctx.source(&b.source)?.repository)
                .await?;
            let report = crate::cli::repo_cmds::backup_recorded(
                &st.ctx,
                Some(st.catalog.as_ref()),
                &b.source,
                4,
                Arc::new(crate::repo::NoProgress),
            )
            .await?;
            let m = &report.manifest;
            Ok(Reply::ok(json!({
                "snapshot": m.id,
                "source": b.source,
                "repository": st.ctx.config.sources[&b.source].repository,
                "bytes_read": m.stream.size,
                "bytes_stored": m.stream.new_bytes,
                "chunks": m.stream.chunks.len(),
                "new_chunks": m.stream.new_chunks,
                "tables": m.facts.fingerprint.tables.len(),
                "rows": m.facts.fingerprint.total_rows(),
                "duration_seconds": report.duration.as_secs_f64(),
            })))
        },
    )
    .await
}

// ---- drills, SLA, fate

async fn drills(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/drills".into(),
        Operation::Read,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            forbidden(&p, Operation::Read, "list drills", &[])?;
            let plane = st.plane();
            let settings = plane.settings().await?;
            let mut list = Vec::new();
            for d in st.drills.iter() {
                if !plane.resource(&d.source).is_ok_and(|r| p.scope.covers(r)) {
                    continue;
                }
                let last = st
                    .catalog
                    .drill_runs(&DrillRunFilter {
                        drill: Some(d.name.clone()),
                        source: None,
                        limit: Some(1),
                    })
                    .await?;
                list.push(json!({
                    "name": d.name,
                    "source": d.source,
                    "schedule": d.schedule,
                    "disabled": settings.job_disabled(&format!("drill:{}", d.name)),
                    "last_verdict": last.first().map(|r| r.verdict.as_str()),
                }));
            }
            Ok(Reply::ok(json!({ "drills": list })))
        },
    )
    .await
}

fn drill<'a>(st: &'a ApiState, name: &str) -> Result<&'a crate::drill::spec::DrillSpec, ControlError> {
    st.drills
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ControlError::NotFound(format!("no drill `{name}`; fix: GET /api/v1/drills lists them")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrillRunBody {
    #[serde(default)]
    negative_control: bool,
}

async fn run_drill(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let source = st.drills.iter().find(|d| d.name == name).map(|d| d.source.clone());
    let action = format!("POST /api/v1/drills/{name}/runs");
    call(
        &st,
        &headers,
        action,
        Operation::Drill,
        source,
        OPERATION_TIMEOUT,
        async move |st, p| {
            let raw = raw.map_err(bad_bytes)?;
            let b: DrillRunBody = optional_body(&raw)?;
            let spec = drill(&st, &name)?;
            let r = st.plane().resource(&spec.source)?;
            forbidden(&p, Operation::Drill, &format!("run drill {name}"), &[r])?;
            st.plane()
                .repository_in_use(&st.ctx.source(&spec.source)?.repository)
                .await?;
            let (result, evidence) = crate::cli::drill_cmds::run_recorded(
                &st.ctx,
                Some(st.catalog.as_ref()),
                spec,
                b.negative_control,
                &crate::repo::NoProgress,
            )
            .await?;
            let mut v = serde_json::to_value(&result).expect("a drill result serialises");
            v["evidence"] = json!(evidence);
            Ok(Reply::ok(v))
        },
    )
    .await
}

/// A body that may be empty.
fn optional_body<T: serde::de::DeserializeOwned + Default>(raw: &Bytes) -> Result<T, ControlError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        ControlError::BadRequest(format!(
            "the request body is not what this route takes: {e}; fix: see GET /api/v1/openapi.json"
        ))
    })
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u32>,
}

async fn drill_runs(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Response {
    let source = st.drills.iter().find(|d| d.name == name).map(|d| d.source.clone());
    let action = format!("GET /api/v1/drills/{name}/runs");
    call(
        &st,
        &headers,
        action,
        Operation::Read,
        source,
        READ_TIMEOUT,
        async move |st, p| {
            let Query(q) = q.map_err(bad_query)?;
            let spec = drill(&st, &name)?;
            let r = st.plane().resource(&spec.source)?;
            forbidden(&p, Operation::Read, &format!("read the runs of drill {name}"), &[r])?;
            let runs = st
                .catalog
                .drill_runs(&DrillRunFilter {
                    drill: Some(name.clone()),
                    source: None,
                    limit: Some(q.limit.unwrap_or(20).min(1000)),
                })
                .await?;
            Ok(Reply::ok(json!({ "runs": runs })))
        },
    )
    .await
}

async fn sla(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/sla".into(),
        Operation::Read,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            forbidden(&p, Operation::Read, "read the SLA", &[])?;
            let plane = st.plane();
            let all = crate::cli::drill_cmds::sla_summaries(&st.drills, st.catalog.as_ref()).await?;
            let list: Vec<_> = all
                .into_iter()
                .filter(|s| plane.resource(&s.source).is_ok_and(|r| p.scope.covers(r)))
                .collect();
            Ok(Reply::ok(json!({ "sources": list })))
        },
    )
    .await
}

async fn fate(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/fate".into(),
        Operation::Read,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            forbidden(&p, Operation::Read, "read the shared-fate analysis", &[])?;
            let plane = st.plane();
            // Never the probe: it writes to storage.
            let analysis = crate::fate::analyse(
                &st.ctx.config,
                &st.drills,
                Some(st.catalog.as_ref()),
                &crate::fate::s3::S3Inspector,
                false,
            )
            .await;
            let findings: Vec<_> = analysis
                .findings
                .iter()
                .filter(|f| match &f.source {
                    Some(s) => plane.resource(s).is_ok_and(|r| p.scope.covers(r)),
                    None => p.scope.is_global(),
                })
                .collect();
            // Counts of what this token may see; notes name sources and repositories, so only a
            // global scope sees them.
            let findings: Vec<crate::fate::Finding> = findings.into_iter().cloned().collect();
            let counts = crate::fate::Counts::of(&findings);
            let notes = if p.scope.is_global() {
                analysis.notes.clone()
            } else {
                Vec::new()
            };
            Ok(Reply::ok(
                json!({ "findings": findings, "counts": counts, "notes": notes }),
            ))
        },
    )
    .await
}

// ---- restore and prune

async fn restore(
    State(st): State<ApiState>,
    headers: HeaderMap,
    b: Result<Json<RestoreSpec>, JsonRejection>,
) -> Response {
    let source = b.as_ref().ok().and_then(|Json(s)| s.source.clone());
    call(
        &st,
        &headers,
        "POST /api/v1/restores".into(),
        Operation::RestoreTarget,
        source,
        OPERATION_TIMEOUT,
        async move |st, p| {
            let spec = body(b)?;
            if let crate::control::RestoreTargetSpec::Dsn {
                password_env: Some(_), ..
            } = &spec.target
            {
                // A variable of the daemon's environment, sent to a host the caller chooses: never.
                return Err(ControlError::BadRequest(
                    "`password_env` is for the CLI only; fix: restore through the API into a server that trusts \
                     the daemon (or has its .pgpass), or use `lifeboat restore --password-env` on the host"
                        .into(),
                ));
            }
            match st.plane().restore(&p, &spec, &crate::repo::NoProgress).await? {
                Outcome::Done(d) => Ok(Reply::ok(d)),
                Outcome::Pending(a) => Ok(Reply::Pending(*a, None)),
            }
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    source: Option<String>,
    repository: Option<String>,
}

async fn prune(State(st): State<ApiState>, headers: HeaderMap, b: Result<Json<PruneBody>, JsonRejection>) -> Response {
    let source = b.as_ref().ok().and_then(|Json(b)| b.source.clone());
    call(
        &st,
        &headers,
        "POST /api/v1/prune".into(),
        Operation::Prune,
        source,
        OPERATION_TIMEOUT,
        async move |st, p| {
            let b = body(b)?;
            let repository = match (&b.repository, &b.source) {
                (Some(r), _) => r.clone(),
                (None, Some(s)) => st.ctx.source(s)?.repository.clone(),
                (None, None) => {
                    return Err(ControlError::BadRequest(
                        "name a `source` (its retention applies)".into(),
                    ));
                }
            };
            let tz = st.ctx.config.daemon.zone();
            let (report, approval) = st.plane().prune(&p, &repository, b.source.as_deref(), None, tz).await?;
            let report = json!({ "report": report });
            Ok(match approval {
                Some(a) => Reply::Pending(a, Some(report)),
                None => Reply::Json(StatusCode::OK, report),
            })
        },
    )
    .await
}

// ---- settings

async fn set_retention(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: Result<Json<RetentionPolicy>, JsonRejection>,
) -> Response {
    let action = format!("PUT /api/v1/sources/{name}/retention");
    call(
        &st,
        &headers,
        action,
        Operation::Admin,
        Some(name.clone()),
        READ_TIMEOUT,
        async move |st, p| {
            let policy = body(b)?;
            match st.plane().set_retention(&p, &name, policy).await? {
                Outcome::Done(policy) => Ok(Reply::ok(json!({ "source": name, "retention": policy }))),
                Outcome::Pending(a) => Ok(Reply::Pending(*a, None)),
            }
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    target: String,
}

async fn disable(
    State(st): State<ApiState>,
    headers: HeaderMap,
    b: Result<Json<TargetBody>, JsonRejection>,
) -> Response {
    call(
        &st,
        &headers,
        "POST /api/v1/disable".into(),
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let b = body(b)?;
            let a = st.plane().disable(&p, &b.target, &st.drills).await?;
            Ok(Reply::Pending(a, None))
        },
    )
    .await
}

async fn enable(
    State(st): State<ApiState>,
    headers: HeaderMap,
    b: Result<Json<TargetBody>, JsonRejection>,
) -> Response {
    call(
        &st,
        &headers,
        "POST /api/v1/enable".into(),
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let b = body(b)?;
            st.plane().enable(&p, &b.target, &st.drills).await?;
            Ok(Reply::ok(json!({ "target": b.target, "enabled": true })))
        },
    )
    .await
}

async fn remove_repository(State(st): State<ApiState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let action = format!("DELETE /api/v1/repositories/{name}");
    call(
        &st,
        &headers,
        action,
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let a = st.plane().remove_repository(&p, &name).await?;
            Ok(Reply::Pending(a, None))
        },
    )
    .await
}

// ---- approvals

#[derive(Deserialize)]
struct StateQuery {
    state: Option<String>,
}

async fn approvals(
    State(st): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/approvals".into(),
        Operation::Read,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let Query(q) = q.map_err(bad_query)?;
            let state = q
                .state
                .map(|s| {
                    ApprovalState::parse(&s).ok_or_else(|| {
                        ControlError::BadRequest(format!(
                            "unknown state `{s}`; fix: pending, approved, denied, expired, running, done or failed"
                        ))
                    })
                })
                .transpose()?;
            let list = st.plane().approvals(&p, state).await?;
            Ok(Reply::ok(json!({ "approvals": list })))
        },
    )
    .await
}

async fn approve(State(st): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let action = format!("POST /api/v1/approvals/{id}/approve");
    call(
        &st,
        &headers,
        action,
        Operation::Approve,
        None,
        OPERATION_TIMEOUT,
        async move |st, p| {
            let a = st.plane().approve(&p, &id).await?;
            Ok(Reply::Decided(Decision::Approved, a))
        },
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    reason: Option<String>,
}

async fn deny(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let action = format!("POST /api/v1/approvals/{id}/deny");
    call(
        &st,
        &headers,
        action,
        Operation::Approve,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let raw = raw.map_err(bad_bytes)?;
            let b: DenyBody = optional_body(&raw)?;
            let a = st.plane().deny(&p, &id, b.reason).await?;
            Ok(Reply::Decided(Decision::DeniedRequest, a))
        },
    )
    .await
}

// ---- audit and tokens

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn audit(
    State(st): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/audit".into(),
        Operation::Read,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let Query(q) = q.map_err(bad_query)?;
            let entries = st
                .plane()
                .audit(&p, q.after.unwrap_or(0), q.limit.unwrap_or(100).min(1000))
                .await?;
            Ok(Reply::ok(json!({ "entries": entries })))
        },
    )
    .await
}

async fn tokens(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    call(
        &st,
        &headers,
        "GET /api/v1/tokens".into(),
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let list = st.plane().tokens(&p).await?;
            Ok(Reply::ok(json!({ "tokens": list })))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
    operations: Vec<Operation>,
    #[serde(default = "everything")]
    environments: Vec<String>,
    #[serde(default = "everything")]
    sources: Vec<String>,
    expires: Option<String>,
}

fn everything() -> Vec<String> {
    vec!["*".into()]
}

async fn create_token(
    State(st): State<ApiState>,
    headers: HeaderMap,
    b: Result<Json<TokenBody>, JsonRejection>,
) -> Response {
    call(
        &st,
        &headers,
        "POST /api/v1/tokens".into(),
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let b = body(b)?;
            let expires = b
                .expires
                .as_deref()
                .map(crate::repo::retention::parse_duration)
                .transpose()
                .map_err(ControlError::BadRequest)?;
            let scope = Scope {
                operations: b.operations.into_iter().collect(),
                environments: b.environments,
                sources: b.sources,
            };
            if scope.operations.is_empty() {
                return Err(ControlError::BadRequest(
                    "`operations` is empty; fix: name at least one".into(),
                ));
            }
            let (info, secret) = st.plane().create_token(&p, &b.name, scope, expires).await?;
            let mut v = serde_json::to_value(&info).expect("a token serialises");
            v["secret"] = json!(secret);
            Ok(Reply::Json(StatusCode::CREATED, v))
        },
    )
    .await
}

async fn revoke_token(State(st): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let action = format!("DELETE /api/v1/tokens/{id}");
    call(
        &st,
        &headers,
        action,
        Operation::Admin,
        None,
        READ_TIMEOUT,
        async move |st, p| {
            let info = st.plane().revoke_token(&p, &id).await?;
            Ok(Reply::ok(json!({ "token": info })))
        },
    )
    .await
}
