//! The worker: `obj.created` events become sdss, ls and ps1 rows.
//!
//! Per delivery: validate; write the obj row with the templated rows (sdss,
//! ls) in a shared batch; resolve ps1 over HTTP and write it; publish
//! `thumbnail.stored` for each new or changed row; then ack. Nothing is acked
//! before its rows are committed. `obj.updated` is handled as `replace`.
//! Beside the consumer, [`reconcile`] sweeps for incomplete objects.

pub mod cutouts;
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
use crate::files::FileStore;

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
    #[error("cutouts.schema_registry_url: {0}")]
    Registry(String),
    #[error("storage: {0}")]
    Storage(#[source] crate::files::FileError),
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
    let db_for_cutouts = db.clone();
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
    // A named connection per queue, so either can be found on the broker.
    let consumer = |topology: Topology, prefetch| ConsumerSettings {
        brokers: bus::Brokers::from_config(&config.amqp),
        connection_name: format!("thumbnails-worker {}", topology.queue),
        topology,
        prefetch,
        drain_timeout: Duration::from_secs(30),
    };
    let settings = consumer(
        Topology::new(&config.amqp.exchange, &config.amqp.queue),
        config.amqp.prefetch,
    );
    // Alerts have a queue and a consumer of their own: a burst of them
    // never delays object events.
    let cutouts = Arc::new(
        cutouts::CutoutsWorker::new(
            config.cutouts.clone(),
            db_for_cutouts,
            FileStore::from_config(&config.storage).map_err(WorkerError::Storage)?,
            abort.clone(),
        )
        .map_err(|e| WorkerError::Registry(e.to_string()))?,
    );
    let cutout_settings = consumer(
        Topology::cutouts(&config.amqp.exchange, &config.amqp.cutouts_queue),
        config.amqp.cutouts_prefetch,
    );
    let objects = bus::consume(settings, shutdown.clone(), move |delivery, ack, session| {
        let worker = worker.clone();
        async move { worker.handle_delivery(delivery, ack, &session).await }
    });
    let alerts = bus::consume(
        cutout_settings,
        shutdown.clone(),
        move |delivery, ack, session| {
            let cutouts = cutouts.clone();
            async move { cutouts.handle_delivery(delivery, ack, &session).await }
        },
    );
    // Either consumer failing for good stops the other.
    let stop_both = |r: Result<(), bus::BusError>| {
        if r.is_err() {
            shutdown.cancel();
        }
        r
    };
    let (objects, alerts) = tokio::join!(async { stop_both(objects.await) }, async {
        stop_both(alerts.await)
    });
    let result = objects.and(alerts);
    abort.cancel();
    sweep_stop.cancel();
    retries_stop.cancel();
    let _ = sweep.await;
    if let Some(task) = retries {
        let _ = task.await;
    }
    Ok(result?)
}
