//! The worker: `obj.created` events become sdss, ls and ps1 rows.
//!
//! Per delivery: validate; write the obj row with the templated rows (sdss,
//! ls) in a shared batch; resolve ps1 over HTTP and write it; publish
//! `thumbnail.stored` for each new or changed row; then ack. Nothing is acked
//! before its rows are committed. `obj.updated` is handled as `replace`.
//! Beside the consumer, [`reconcile`] sweeps for incomplete objects.

mod handler;
mod ps1;
pub mod ps1_retry;
pub mod reconcile;
mod writer;

pub use handler::{Outcome, Worker};
pub use ps1::Ps1Client;
pub use ps1_retry::Ps1Retries;
pub use writer::{WriteError, Writer};

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{self, ConsumerSettings, Topology};
use crate::config::Config;

/// Jobs per transaction at most.
const MAX_BATCH: usize = 1024;
/// Transactions in flight at once.
const WRITERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error("surveys: {0}")]
    Surveys(String),
}

/// Runs the worker until `shutdown`, then drains in-flight deliveries.
pub async fn run(
    config: &Config,
    db: sea_orm::DatabaseConnection,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // Counters go to the process's Prometheus recorder whatever the mode.
    let _ = crate::telemetry::metrics::handle();
    let abort = CancellationToken::new();
    let pool = db.get_postgres_connection_pool().clone();
    let worker = Arc::new(Worker::new(config, db, abort.clone())?);
    // Failed PS1 lookups come back through the queue after their back-off.
    let retries_stop = shutdown.child_token();
    let retries = if config.surveys.ps1.lookup_url.is_empty() {
        None
    } else {
        let link = bus::BusLink::connect(&config.amqp, "thumbnails-worker ps1-retries").await?;
        Some(tokio::spawn(
            worker.ps1_retries().run(link, retries_stop.clone()),
        ))
    };
    // The sweep stops with the consumer, whether by shutdown or by error.
    let sweep_stop = shutdown.child_token();
    let sweep = tokio::spawn(reconcile::run(config.clone(), pool, sweep_stop.clone()));
    let settings = ConsumerSettings {
        url: config.amqp.url.clone(),
        connection_name: format!("thumbnails-worker {}", config.amqp.queue),
        topology: Topology::new(&config.amqp.exchange, &config.amqp.queue),
        prefetch: config.amqp.prefetch,
        drain_timeout: Duration::from_secs(30),
    };
    let result = bus::consume(settings, shutdown, move |delivery, ack, session| {
        let worker = worker.clone();
        async move { worker.handle_delivery(delivery, ack, &session).await }
    })
    .await;
    abort.cancel();
    sweep_stop.cancel();
    retries_stop.cancel();
    let _ = sweep.await;
    if let Some(task) = retries {
        let _ = task.await;
    }
    Ok(result?)
}
