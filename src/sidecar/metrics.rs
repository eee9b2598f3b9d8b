//! Prometheus metrics. The recorder is global and can be installed once per
//! process, while tests start many apps in one process: install it once and
//! share the handle.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds; uploads decode an image, write a file and commit.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide handle, installing the recorder on first use. `None` if
/// another recorder was installed first (metrics then go there).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .map(|b| b.install_recorder());
            match builder {
                Ok(Ok(handle)) => {
                    describe();
                    Some(handle)
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "thumbnails_uploads_total",
        "Uploads by result (success, invalid, unauthorized, forbidden, too_large, error)"
    );
    metrics::describe_counter!(
        "thumbnails_upload_bytes_stored_total",
        "Bytes of PNG written by successful uploads"
    );
    metrics::describe_counter!(
        "thumbnails_events_published_total",
        "Events published with a broker confirm, by routing key"
    );
    metrics::describe_counter!(
        "thumbnails_outbox_relay_failures_total",
        "Outbox relay rounds that failed"
    );
    metrics::describe_histogram!(
        "thumbnails_http_request_duration_seconds",
        "HTTP request latency by route, method and status"
    );
}

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

/// Runs the recorder's upkeep (histogram maintenance) every 10 seconds.
pub async fn upkeep_loop(shutdown: tokio_util::sync::CancellationToken) {
    let Some(handle) = handle() else { return };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => handle.run_upkeep(),
        }
    }
}
