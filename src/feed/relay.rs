//! The outbox relay's I/O: claim and delete a page of
//! `thumbnails_feed_outbox` rows in one statement (`DELETE .. RETURNING`
//! over `FOR UPDATE SKIP LOCKED`, so replicas share the work), publish their
//! events with confirms, and commit the delete only after every confirm. A
//! crash between publish and commit rolls the delete back, leaving the rows
//! for the next claim: an event may go out twice, never zero times.

use sea_orm::sqlx::{self, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use super::event::{plan, OutboxRow};
use super::FeedError;
use crate::bus::Publisher;

/// Deletes (uncommitted) a page of outbox rows (one per INSERT statement or
/// changed object) and returns them with each of their objects' position now.
const CLAIM: &str = "WITH f AS (
      DELETE FROM thumbnails_feed_outbox WHERE id IN (
        SELECT id FROM thumbnails_feed_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
      RETURNING id, obj_ids, kind)
    SELECT f.id, x.obj_id, f.kind, o.ra, o.dec, o.is_roid
    FROM f
    CROSS JOIN LATERAL unnest(f.obj_ids) AS x(obj_id)
    LEFT JOIN objs o ON o.id = x.obj_id
    ORDER BY f.id";

/// Outbox row id, object id, kind, and the object's ra, dec, is_roid now.
type ClaimRow = (i64, String, String, Option<f64>, Option<f64>, Option<bool>);

/// Claims, publishes, deletes.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    batch: i64,
}

/// A page whose events are published and confirmed, its rows deleted but
/// not yet committed. Dropping it without [`ClaimedPage::commit`] rolls
/// back: the rows are claimed again (what a crash at this point does).
pub struct ClaimedPage {
    tx: Transaction<'static, Postgres>,
    rows: usize,
    /// Events published.
    pub published: usize,
}

/// What one drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Outbox rows consumed.
    pub rows: usize,
    /// Events published.
    pub published: usize,
}

impl Relay {
    pub fn new(pool: PgPool, batch: u32) -> Self {
        Self {
            pool,
            batch: i64::from(batch.max(1)),
        }
    }

    /// Claims one page and publishes its events; `None` if nothing is
    /// waiting (or every waiting row is claimed by another relay).
    pub async fn publish_page(
        &self,
        publisher: &Publisher,
    ) -> Result<Option<ClaimedPage>, FeedError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
            .bind(self.batch)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let rows: Vec<OutboxRow> = rows
            .into_iter()
            .map(|(id, obj_id, kind, ra, dec, is_roid)| OutboxRow {
                id,
                obj_id,
                kind,
                ra,
                dec,
                is_roid,
            })
            .collect();
        let plan = plan(&rows);
        for (obj_id, reason) in &plan.skipped {
            tracing::debug!(%obj_id, %reason, "feed: nothing to make");
        }
        // Published together, confirmed together (mandatory: the worker's
        // queue is bound to both keys, so a refusal is an error).
        futures_util::future::try_join_all(
            plan.events
                .iter()
                .map(|e| publisher.publish_json(e.routing_key, &e.body, true)),
        )
        .await?;
        metrics::counter!("thumbnails_feed_events_published_total")
            .increment(plan.events.len() as u64);
        let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        ids.dedup();
        Ok(Some(ClaimedPage {
            tx,
            rows: ids.len(),
            published: plan.events.len(),
        }))
    }

    /// Publishes pages until the outbox is empty (of rows nobody else
    /// holds) or `stop` is cancelled (checked between pages).
    pub async fn drain(
        &self,
        publisher: &Publisher,
        stop: &CancellationToken,
    ) -> Result<Drained, FeedError> {
        let mut total = Drained::default();
        while !stop.is_cancelled() {
            let Some(page) = self.publish_page(publisher).await? else {
                break;
            };
            total.published += page.published;
            let rows = page.commit().await?;
            total.rows += rows;
            if rows < self.batch as usize {
                break;
            }
        }
        Ok(total)
    }
}

impl ClaimedPage {
    /// Commits the page's delete; returns how many rows.
    pub async fn commit(self) -> Result<usize, FeedError> {
        self.tx.commit().await?;
        Ok(self.rows)
    }
}
