//! The self-healing sweep (`reconcile.interval_s`): every interval, one
//! replica (an advisory lock on a connection of its own) walks `objs` in
//! keyset pages and publishes `obj.created` for the types an object lacks,
//! as `replay --missing` does: after SkyPortal's "brute force" `DELETE FROM
//! thumbnails WHERE type IN (...)`, after lost events, after a PS1 outage
//! (a placeholder is looked up again at most every
//! `reconcile.ps1_retry_after_s`).

use std::time::Duration;

use chrono::Utc;
use sea_orm::sqlx::{self, pool::PoolConnection, Connection, PgPool, Postgres};
use tokio_util::sync::CancellationToken;

use crate::bus::events::{Archival, ObjCreated};
use crate::bus::{BusError, PublisherConnection, Topology, ROUTING_OBJ_CREATED};
use crate::config::Config;
use crate::store::sweep::{self, Incomplete, SWEEP_LOCK};
use crate::surveys::ThumbnailType;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    /// Pages of objects read.
    pub pages: u64,
    /// Events published (one per incomplete object).
    pub published: u64,
    /// Of those, objects whose ps1 placeholder is looked up again.
    pub ps1_retries: u64,
    /// Stopped by shutdown before the end.
    pub interrupted: bool,
    /// Stopped after `reconcile.max_queued` events; the next sweep goes on.
    pub capped: bool,
    /// Skipped: the worker's queue held this many events.
    pub backlog: Option<u32>,
}

/// Sweeps the database; publishes on a connection opened only when there
/// is something to publish.
#[derive(Clone)]
pub struct Sweeper {
    pool: PgPool,
    batch: i64,
    ps1_retry_after: Duration,
    max_queued: u64,
    amqp: crate::config::AmqpConfig,
    topology: Topology,
}

impl Sweeper {
    pub fn new(config: &Config, pool: PgPool) -> Self {
        Self {
            pool,
            batch: i64::from(config.reconcile.batch.max(1)),
            ps1_retry_after: Duration::from_secs(config.reconcile.ps1_retry_after_s),
            max_queued: u64::from(config.reconcile.max_queued),
            amqp: config.amqp.clone(),
            topology: Topology::new(&config.amqp.exchange, &config.amqp.queue),
        }
    }

    /// One sweep over every object; `None` if another replica is sweeping.
    pub async fn sweep_once(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<SweepSummary>, ReconcileError> {
        let mut conn = self.pool.acquire().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        let result = match self.queued().await {
            Ok(n) if u64::from(n) > self.max_queued => Ok(SweepSummary {
                backlog: Some(n),
                ..Default::default()
            }),
            Ok(_) => self.sweep_locked(&mut conn, stop).await,
            Err(e) => Err(e.into()),
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SWEEP_LOCK)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // Closing the session releases its locks.
            conn.close_on_drop();
        }
        result.map(Some)
    }

    /// Events waiting in the worker's queue (a passive declare).
    async fn queued(&self) -> Result<u32, BusError> {
        let conn = crate::bus::connect_config(&self.amqp, "thumbnails-reconcile").await?;
        let result = async {
            let channel = conn.create_channel().await?;
            let queue = crate::bus::passive_declare(&channel, &self.topology.queue).await;
            let _ = channel.close(200, "counted".into()).await;
            // A queue not declared yet holds nothing.
            Ok::<_, BusError>(queue.map(|q| q.message_count()).unwrap_or(0))
        }
        .await;
        let _ = conn.close(200, "counted".into()).await;
        result
    }

    async fn sweep_locked(
        &self,
        conn: &mut PoolConnection<Postgres>,
        stop: &CancellationToken,
    ) -> Result<SweepSummary, ReconcileError> {
        let mut link: Option<PublisherConnection> = None;
        let result = self.pages(conn, &mut link, stop).await;
        if let Some(l) = link {
            l.close("sweep done").await;
        }
        result
    }

    async fn pages(
        &self,
        conn: &mut PoolConnection<Postgres>,
        link: &mut Option<PublisherConnection>,
        stop: &CancellationToken,
    ) -> Result<SweepSummary, ReconcileError> {
        let mut summary = SweepSummary::default();
        let mut after = String::new();
        loop {
            if stop.is_cancelled() {
                summary.interrupted = true;
                return Ok(summary);
            }
            let now = Utc::now().naive_utc();
            let retry_before = now
                - chrono::Duration::from_std(self.ps1_retry_after).unwrap_or(chrono::Duration::MAX);
            let mut tx = conn.begin().await?;
            // Cheap index walks that a misjudged plan could otherwise JIT.
            sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
            let page = sweep::sweep_page(&mut tx, &after, self.batch, retry_before).await?;
            tx.commit().await?;
            let Some(end) = page.end else {
                return Ok(summary);
            };
            summary.pages += 1;
            let bodies: Vec<Vec<u8>> = page.incomplete.iter().filter_map(event_for).collect();
            if !bodies.is_empty() {
                if link.is_none() {
                    *link = Some(
                        PublisherConnection::open_config(
                            &self.amqp,
                            "thumbnails-reconcile",
                            &self.topology,
                        )
                        .await?,
                    );
                }
                if let Some(l) = link.as_ref() {
                    for chunk in bodies.chunks(1000) {
                        l.publisher()
                            .publish_many(ROUTING_OBJ_CREATED, chunk, true)
                            .await?;
                    }
                }
                summary.published += bodies.len() as u64;
                metrics::counter!("thumbnails_reconcile_events_published_total")
                    .increment(bodies.len() as u64);
                let retried: Vec<String> = page
                    .incomplete
                    .iter()
                    .filter(|i| i.ps1_retry)
                    .map(|i| i.id.clone())
                    .collect();
                summary.ps1_retries += retried.len() as u64;
                sweep::stamp_ps1_retry(conn, &retried, now).await?;
                if summary.published >= self.max_queued {
                    summary.capped = true;
                    return Ok(summary);
                }
            }
            after = end;
        }
    }
}

/// The archival types an incomplete object should get (a ps1 placeholder
/// due for another lookup counts as missing).
pub fn missing_types(o: &Incomplete) -> Vec<ThumbnailType> {
    Archival {
        sdss: o.has_sdss,
        ls: o.has_ls,
        ps1: o.has_ps1 && !o.ps1_retry,
    }
    .lacking(&ThumbnailType::ARCHIVAL)
}

/// The `obj.created` body asking for the missing types; `None` if nothing
/// is missing or the position would be dead-lettered.
fn event_for(o: &Incomplete) -> Option<Vec<u8>> {
    let types = missing_types(o);
    if types.is_empty() {
        return None;
    }
    match ObjCreated::existing_body(&o.id, o.ra, o.dec, false, Some(&types), false, None) {
        Ok(body) => Some(body),
        Err(e) => {
            tracing::debug!(obj_id = %o.id, reason = %e, "reconcile: skipped");
            None
        }
    }
}

/// Sweeps every `reconcile.interval_s` (the first one interval after
/// start) until `shutdown`; returns at once if the interval is 0. Failures
/// are logged and the next interval tries again.
pub async fn run(config: Config, pool: PgPool, shutdown: CancellationToken) {
    if config.reconcile.interval_s == 0 {
        return;
    }
    let interval = Duration::from_secs(config.reconcile.interval_s);
    let sweeper = Sweeper::new(&config, pool);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let started = std::time::Instant::now();
        match sweeper.sweep_once(&shutdown).await {
            Ok(None) => tracing::debug!("reconcile: another replica is sweeping"),
            Ok(Some(SweepSummary {
                backlog: Some(n), ..
            })) => tracing::info!(
                queued = n,
                "reconcile: the worker's queue is not drained; sweeping later"
            ),
            Ok(Some(s)) if s.published > 0 => tracing::info!(
                events = s.published,
                ps1_retries = s.ps1_retries,
                pages = s.pages,
                capped = s.capped,
                took_ms = started.elapsed().as_millis() as u64,
                "reconcile: published events for incomplete objects"
            ),
            Ok(Some(s)) => tracing::debug!(pages = s.pages, "reconcile: nothing missing"),
            Err(e) => tracing::warn!(error = %e, "reconcile: sweep failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(has: [bool; 3], retry: bool) -> Incomplete {
        Incomplete {
            id: "o".into(),
            ra: 1.0,
            dec: 2.0,
            has_sdss: has[0],
            has_ls: has[1],
            has_ps1: has[2],
            ps1_retry: retry,
        }
    }

    #[test]
    fn asks_only_for_what_is_missing() {
        use ThumbnailType::*;
        assert_eq!(missing_types(&inc([false; 3], false)), vec![Sdss, Ls, Ps1]);
        assert_eq!(missing_types(&inc([true, false, true], false)), vec![Ls]);
        assert_eq!(missing_types(&inc([true, true, true], true)), vec![Ps1]);
        assert!(event_for(&inc([true; 3], false)).is_none());
        let body = event_for(&inc([true, true, true], true)).expect("event");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
            serde_json::json!({"id": "o", "ra": 1.0, "dec": 2.0, "types": ["ps1"], "existing": true})
        );
    }

    #[test]
    fn positions_the_worker_would_refuse_are_skipped() {
        let mut o = inc([false; 3], false);
        o.ra = 360.0;
        assert!(event_for(&o).is_none());
    }
}
