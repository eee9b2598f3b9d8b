//! HTTP metrics: request latency per route and upload outcomes. The
//! recorder itself is [`crate::telemetry::metrics`].

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Records every request's latency under its route template.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    if route == "/api/thumbnail" && method == "POST" {
        upload_result(response.status());
    }
    metrics::histogram!(
        "thumbnails_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string(),
    )
    .record(start.elapsed().as_secs_f64());
    response
}

/// Counts one upload outcome, named from its status (so that refusals by
/// the auth extractor or the body limit layer count too).
fn upload_result(status: axum::http::StatusCode) {
    let result = match status.as_u16() {
        200..=299 => "success",
        400 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        413 => "too_large",
        _ => "error",
    };
    metrics::counter!("thumbnails_uploads_total", "result" => result).increment(1);
}

/// Counts bytes written by a successful upload.
pub fn counter_bytes(bytes: usize) {
    metrics::counter!("thumbnails_upload_bytes_stored_total").increment(bytes as u64);
}
