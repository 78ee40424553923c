//! The routes every daemon serves: `GET /metrics` and `GET /healthz`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::health::{Health, HealthStatus};
use crate::telemetry::{self, Metrics};

/// What the built-in routes read.
#[derive(Clone, Debug, Default)]
pub struct HttpState {
    pub metrics: Metrics,
    pub health: Health,
}

/// `GET /metrics` (OpenMetrics text) and `GET /healthz` (JSON; 200 when healthy, 503 when a check
/// fails). The router carries its state already, so the daemon can `.merge()` routers with other
/// state (the JSON API under `/api/v1`) and add layers before serving.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    let report = state.health.report();
    let code = match report.status {
        HealthStatus::Ok => StatusCode::OK,
        HealthStatus::Degraded => StatusCode::SERVICE_UNAVAILABLE,
    };
    // A load balancer or a probe must see the state of now, never a cached one.
    (code, [(header::CACHE_CONTROL, "no-store")], Json(report))
}
