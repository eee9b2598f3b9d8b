//! Prometheus metrics. The recorder is global and can be installed once per
//! process, while tests start many apps in one process: install it once and
//! share the handle. Every subcommand that runs the worker or the sidecar
//! installs it, so their counters are exported whichever mode runs.

use std::sync::OnceLock;

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
        "thumbnails_worker_events_total",
        "Worker deliveries by outcome (done, dead_lettered)"
    );
    metrics::describe_counter!(
        "thumbnails_worker_rows_written_total",
        "Survey rows the worker inserted or changed"
    );
    metrics::describe_counter!("thumbnails_ps1_lookups_total", "PS1 lookups by outcome");
    metrics::describe_counter!(
        "thumbnails_storage_errors_total",
        "File writes the storage refused, by kind (full, read_only, unavailable)"
    );
    metrics::describe_counter!(
        "thumbnails_outbox_relay_failures_total",
        "Outbox relay rounds that failed"
    );
    metrics::describe_gauge!(
        "thumbnails_database_unreachable",
        "1 while a component (worker, cutouts, uploads, feed, outbox) finds the database unreachable"
    );
    metrics::describe_counter!(
        "thumbnails_database_reconnects_total",
        "Database outages a component came back from"
    );
    metrics::describe_gauge!(
        "thumbnails_broker_blocked_since_seconds",
        "Unix time since which the broker blocks a connection's publishes (memory or disk alarm); 0 when free"
    );
    metrics::describe_histogram!(
        "thumbnails_http_request_duration_seconds",
        "HTTP request latency by route, method and status"
    );
    metrics::describe_histogram!(
        "thumbnails_worker_write_duration_seconds",
        "Time to write one batch of survey rows (one transaction), by outcome"
    );
    metrics::describe_gauge!(
        "thumbnails_ps1_lookups_in_flight",
        "PS1 lookups waiting for the PS1 service's answer"
    );
    metrics::describe_gauge!(
        "thumbnails_feed_backlog",
        "Rows waiting in thumbnails_feed_outbox (sampled by the sidecar, capped at 10000)"
    );
    metrics::describe_gauge!(
        "thumbnails_dead_letters",
        "Messages in each dead-letter queue (sampled by the sidecar)"
    );
    metrics::describe_counter!(
        "thumbnails_grayscale_rows_total",
        "Rows the grayscale pass judged, by verdict"
    );
    metrics::describe_counter!(
        "thumbnails_cutouts_failed_total",
        "Cutouts of stored alerts that could not be drawn, by reason"
    );
    metrics::describe_counter!(
        "thumbnails_cutouts_stamps_total",
        "Alert stamps written by the worker"
    );
}

/// A gauge counting what is in progress: up by one now, down by one when
/// dropped (whichever way the work ends).
pub struct InFlight(&'static str);

impl InFlight {
    pub fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
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
