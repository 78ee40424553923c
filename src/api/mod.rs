//! The JSON API under `/api/v1`, served by the daemon beside `/metrics` and `/healthz`.
//!
//! Every route but `GET /api/v1/openapi.json` needs `Authorization: Bearer <token>`; the rules are
//! [`ControlPlane`]'s, the same the CLI follows. Every call, allowed or not, gets one audit entry.
//! Errors are `{"error": {"code", "message"}}` with a stable code (see [`ControlError::code`]);
//! bodies are limited to [`MAX_BODY`], reads to [`READ_TIMEOUT`] and operations that run a backup,
//! drill, restore or prune to [`OPERATION_TIMEOUT`]. The OpenAPI document (`openapi.json`) lists
//! every route; a test checks that it and the router agree.

mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::catalog::Catalog;
use crate::cli::context::Context;
use crate::control::{Approval, AuditEvent, ControlError, ControlPlane, Decision, Operation, Principal, audit};
use crate::drill::spec::DrillSpec;

pub use routes::router;

/// The OpenAPI 3.1 document, as served.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a read may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a backup, drill, restore or prune started through the API may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What the API works with: the daemon's config, a catalog and the drill files.
#[derive(Clone)]
pub struct ApiState {
    pub ctx: Arc<Context>,
    pub catalog: Arc<dyn Catalog>,
    pub drills: Arc<Vec<DrillSpec>>,
    /// For `lifeboat_approvals_pending`, refreshed whenever a call makes or decides a request.
    pub metrics: crate::telemetry::Metrics,
}

impl ApiState {
    pub fn plane(&self) -> ControlPlane<'_> {
        ControlPlane::new(&self.ctx, self.catalog.as_ref())
    }
}

/// What a handler answers when it succeeds.
pub enum Reply {
    /// 200 (or another status) with a body.
    Json(StatusCode, serde_json::Value),
    /// 202: an approval request was created instead of acting.
    Pending(Approval, Option<serde_json::Value>),
    /// A decision on a request: 200 with it.
    Decided(Decision, Approval),
}

impl Reply {
    pub fn ok(value: impl serde::Serialize) -> Reply {
        Reply::Json(StatusCode::OK, serde_json::to_value(value).expect("a reply serialises"))
    }
}

fn error_response(e: &ControlError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_body(status, e.code(), &e.to_string())
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The bearer token of a request, if it sent one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// One API call: authenticate, run `f` within `timeout`, answer, and audit it.
///
/// The call runs in a task of its own: a client that disconnects (or a proxy that gives up) cannot
/// stop an approved action halfway, nor keep its call out of the audit log.
pub async fn call<F, Fut>(
    st: &ApiState,
    headers: &HeaderMap,
    action: String,
    operation: Operation,
    source: Option<String>,
    timeout: Duration,
    f: F,
) -> Response
where
    F: FnOnce(ApiState, Principal) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Reply, ControlError>> + Send + 'static,
{
    let st = st.clone();
    let token = bearer(headers).map(str::to_string);
    let task = tokio::spawn(async move {
        let principal = match &token {
            None => Err(ControlError::Unauthenticated(crate::control::token::AuthError::Missing)),
            Some(token) => st.plane().authenticate(token).await,
        };
        let name = principal
            .as_ref()
            .map_or("unauthenticated".to_string(), |p| p.name.clone());
        let result = match principal {
            Err(e) => Err(e),
            Ok(p) => match tokio::time::timeout(timeout, f(st.clone(), p)).await {
                Ok(r) => r,
                Err(_) => Err(ControlError::Failed(format!(
                    "the call did not finish within {} s and was stopped; fix: for long work use the CLI on the daemon's host, or retry",
                    timeout.as_secs()
                ))),
            },
        };
        let (decision, approval, outcome, response) = answer(result);
        let environment = source
            .as_deref()
            .and_then(|s| st.ctx.config.sources.get(s))
            .map(|s| s.environment.clone());
        let event = AuditEvent {
            at: jiff::Timestamp::now(),
            principal: name,
            action,
            operation: Some(operation),
            environment,
            source,
            decision,
            outcome,
            approval,
        };
        if let Err(e) = audit::append(st.catalog.as_ref(), &event).await {
            tracing::error!("the audit log could not be written for `{}`: {e}", event.action);
        }
        if matches!(
            decision,
            Decision::Pending | Decision::Approved | Decision::DeniedRequest
        ) && let Ok(counts) =
            crate::control::approval::pending_by_kind(st.catalog.as_ref(), jiff::Timestamp::now()).await
        {
            st.metrics.approvals_pending(&counts);
        }
        response
    });
    match task.await {
        Ok(response) => response,
        Err(e) => error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            &format!("the call failed unexpectedly ({e}); the daemon's log has details"),
        ),
    }
}

/// The audit decision, the approval it concerns, the outcome's text and the HTTP response.
fn answer(result: Result<Reply, ControlError>) -> (Decision, Option<String>, String, Response) {
    match result {
        Ok(Reply::Json(status, body)) => (
            Decision::Allowed,
            None,
            status.as_u16().to_string(),
            (status, Json(body)).into_response(),
        ),
        Ok(Reply::Pending(a, extra)) => {
            let mut body = json!({"approval": a});
            if let Some(serde_json::Value::Object(extra)) = extra {
                body.as_object_mut().expect("an object").extend(extra);
            }
            (
                Decision::Pending,
                Some(a.id.clone()),
                format!("202 approval {}", a.id),
                (StatusCode::ACCEPTED, Json(body)).into_response(),
            )
        }
        Ok(Reply::Decided(d, a)) => {
            let outcome = format!(
                "200 {}{}",
                a.state.as_str(),
                a.outcome.as_ref().map(|o| format!(": {o}")).unwrap_or_default()
            );
            let id = a.id.clone();
            (
                d,
                Some(id),
                outcome,
                (StatusCode::OK, Json(json!({"approval": a}))).into_response(),
            )
        }
        Err(e) => {
            let decision = match &e {
                ControlError::Unauthenticated(_) => Decision::Unauthenticated,
                ControlError::Forbidden(_) | ControlError::SelfApproval(_) => Decision::Denied,
                _ => Decision::Allowed,
            };
            (
                decision,
                None,
                format!("{} {}: {e}", e.http_status(), e.code()),
                error_response(&e),
            )
        }
    }
}

/// For routes that do not exist under `/api/v1`.
pub async fn not_found() -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API route; fix: GET /api/v1/openapi.json lists them",
    )
}

/// A JSON body that could not be read: too large, or not the shape the route takes. serde's message
/// quotes the offending value, which may be a secret (a DSN with a password): quoted parts are cut.
pub fn bad_body(e: axum::extract::rejection::JsonRejection) -> ControlError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    ControlError::BadRequest(format!(
        "the request body is not what this route takes: {}; fix: see GET /api/v1/openapi.json",
        without_quoted(&e.body_text())
    ))
}

pub fn bad_bytes(e: axum::extract::rejection::BytesRejection) -> ControlError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    ControlError::BadRequest(format!("the request body could not be read: {}", e.body_text()))
}

pub fn bad_query(e: axum::extract::rejection::QueryRejection) -> ControlError {
    ControlError::BadRequest(format!(
        "the query string is not what this route takes: {}; fix: see GET /api/v1/openapi.json",
        without_quoted(&e.body_text())
    ))
}

fn too_large() -> ControlError {
    ControlError::PayloadTooLarge(format!(
        "the request body is larger than {} KiB; fix: send less",
        MAX_BODY / 1024
    ))
}

/// `invalid type: string "postgres://u:pw@h"` -> `invalid type: string "…"`.
fn without_quoted(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_values_are_cut_from_messages() {
        assert_eq!(
            super::without_quoted(r#"invalid type: string "postgres://u:pw@h/db", expected a map"#),
            "invalid type: string \"…\", expected a map"
        );
    }
}
