//! The database feed: `thumbnails feed` (also run by `thumbnails run`).
//!
//! Triggers on `objs` (migration `m20261204_000001_feed`) write one row per
//! INSERT statement (the ids it inserted) and per change of `ra`, `dec` or
//! `is_roid` into `thumbnails_feed_outbox` and `NOTIFY thumbnails_feed`. The relay wakes on
//! the notification (or every `feed.poll_interval_s`), reads each object's
//! current position and publishes `obj.created` / `obj.updated` ([`event`]:
//! the pure part), deleting rows only after the broker confirmed ([`relay`]).
//! With `feed.enabled: false` the triggers are told to write nothing.

pub mod event;
pub mod relay;

pub use relay::{ClaimedPage, Drained, Relay};

use std::time::Duration;

use sea_orm::sqlx::{self, postgres::PgListener, PgPool};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, BusLink};
use crate::config::Config;
use crate::store::outage::{component, Outage};
use crate::store::retry::{classify_sqlx, Backoff, Failure};

/// The channel the triggers notify.
pub const CHANNEL: &str = "thumbnails_feed";

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    NotPostgres(#[from] crate::store::NotPostgres),
}

impl FeedError {
    /// The database could not be reached (refused, lost, restarting).
    pub fn is_connection(&self) -> bool {
        matches!(self, FeedError::Db(e) if classify_sqlx(e) == Failure::Connection)
    }
}

/// Tells the triggers whether to record anything. Turning the feed off also
/// drops the rows recorded so far: nobody will publish them. Returns how
/// many were dropped.
pub async fn set_enabled(pool: &PgPool, enabled: bool) -> Result<u64, FeedError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE thumbnails_feed_state SET enabled = $1")
        .bind(enabled)
        .execute(&mut *tx)
        .await?;
    let dropped = if enabled {
        0
    } else {
        sqlx::query("DELETE FROM thumbnails_feed_outbox")
            .execute(&mut *tx)
            .await?
            .rows_affected()
    };
    tx.commit().await?;
    Ok(dropped)
}

/// Runs the relay until `shutdown` (returns at once, having switched the
/// triggers off, when `feed.enabled` is false). The database and the broker
/// must be reachable at start; later outages are waited out.
pub async fn run(
    config: &Config,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> Result<(), FeedError> {
    let pool = crate::store::pg_pool(&db, "the feed")?.clone();
    if !config.feed.enabled {
        let dropped = set_enabled(&pool, false).await?;
        tracing::info!(
            dropped,
            "feed disabled (feed.enabled: false): objs triggers record nothing"
        );
        return Ok(());
    }
    // Connects now: a wrong broker address is reported at start.
    let link = BusLink::connect(&config.amqp, "thumbnails-feed").await?;
    // Listen before enabling, so no insert made from then on goes unnoticed.
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    set_enabled(&pool, true).await?;
    let relay = Relay::new(pool, config.feed.batch);
    let poll = Duration::from_secs_f64(config.feed.poll_interval_s);
    let outage = Outage::new(component::FEED);
    let mut attempt = 0;
    tracing::info!("feed: relaying objs inserts and position changes");
    loop {
        match link.publisher().await {
            Err(e) => tracing::warn!(error = %e, "feed: cannot reach the broker; retrying"),
            Ok(publisher) => match relay.drain(&publisher, &shutdown).await {
                Ok(d) => {
                    outage.recovered();
                    if d.published > 0 {
                        tracing::debug!(events = d.published, rows = d.rows, "feed: published");
                    }
                }
                Err(FeedError::Bus(e)) => {
                    tracing::warn!(error = %e, "feed: publishing failed; the rows stay for the next try");
                    link.reset().await;
                }
                Err(e) if e.is_connection() => {
                    outage.failed(&e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "feed: relay failed; the rows stay for the next try")
                }
            },
        }
        // While the database is away, try again soon (doubling up to the
        // poll interval) rather than once per poll interval: the feed
        // resumes within about a second of the database answering.
        let wait = Backoff::UNTIL_STOPPED.round_wait(&outage, &mut attempt, poll);
        let woke = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = listener.recv(), if attempt == 0 => n.map(|_| ()),
            _ = tokio::time::sleep(wait) => Ok(()),
        };
        if let Err(e) = woke {
            // The listener reconnects at its next recv; until then the
            // relay's own statements tell whether the database is back.
            outage.failed(&e);
        }
    }
    link.close().await;
    Ok(())
}
