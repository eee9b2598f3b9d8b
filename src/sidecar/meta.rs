//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = super::api::EmptyReply)))]
pub async fn healthz() -> Response {
    Json(json!({"status": "success", "data": {}})).into_response()
}

/// The database and the broker are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = super::api::EmptyReply),
        (status = 503, description = "A dependency is unreachable", body = super::api::ErrorReply),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = match tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let bus = match tokio::time::timeout(READY_TIMEOUT, state.bus.ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    // A consumer of this config whose queue the broker refuses (see
    // bus::refusal): the broker answers, but alerts or objects are not read.
    let mut refused = crate::bus::refusal::Refusals::of(state.queues.iter().map(String::as_str));
    // A full or read-only storage (its last write failed so).
    refused.extend(crate::files::health::problem(&state.files.describe()));
    match (db, bus) {
        (Ok(()), Ok(())) if refused.is_empty() => {
            // A broker blocking publishes (a resource alarm) still serves:
            // uploads answer and their events wait in the outbox.
            let blocked = crate::bus::blocked::blocked_now();
            let broker = match blocked.first() {
                None => json!("ok"),
                Some(first) => json!({
                    "blocked_since": chrono::DateTime::<chrono::Utc>::from(first.since)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "reason": first.reason,
                    "connections": blocked.iter().map(|b| b.connection.as_str()).collect::<Vec<_>>(),
                }),
            };
            Json(json!({"status": "success", "data": {"database": "ok", "broker": broker}}))
                .into_response()
        }
        (db, bus) => {
            let mut problems = Vec::new();
            if let Err(e) = db {
                problems.push(format!("database unreachable: {e}"));
            }
            if let Err(e) = bus {
                problems.push(format!("broker unreachable: {e}"));
            }
            problems.extend(refused);
            let message = problems.join("; ");
            tracing::warn!(%message, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "error", "message": message})),
            )
                .into_response()
        }
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let text = match crate::telemetry::metrics::handle() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    };
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    match state.openapi.get() {
        Some(doc) => ([(CONTENT_TYPE, "application/json")], doc.clone()).into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
