//! `thumbnail.stored` events through an outbox: the event row is written in
//! the same transaction as the thumbnail row, published (from memory) with
//! confirms after the commit and deleted once confirmed; concurrent requests
//! share one `DELETE` ([`Deleter`]). A background task republishes what a
//! failed publish (or a crash) left behind, so a committed row's event is
//! never lost (it may, rarely, be published twice: the background task only
//! takes rows older than [`RELAY_MIN_AGE`], which a publish in flight has
//! normally finished within).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::entities::thumbnail;
use super::outage::{component, Outage};
use super::retry::{is_connection, Backoff};
use crate::bus::{BusError, BusLink, StoredThumbnail, ThumbnailStored};
use crate::surveys::ThumbnailType;

pub const TABLE: &str = "thumbnail_outbox";

/// Rows claimed per relay transaction.
const RELAY_BATCH: i64 = 100;
/// The background relay leaves younger rows to the request that wrote them
/// (its publish and delete are normally done within milliseconds).
pub const RELAY_MIN_AGE: Duration = Duration::from_secs(2);
/// Most confirmed events one `DELETE` removes.
const DELETE_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot delete a published event: {0}")]
    Deleter(String),
}

/// The `thumbnail.stored` body announcing one row read through the entity.
pub fn stored_event(row: &thumbnail::Model) -> String {
    let ttype = row
        .ttype
        .map(|t| ThumbnailType::from(t).as_str())
        .unwrap_or("");
    let body = ThumbnailStored {
        obj_id: &row.obj_id,
        thumbnails: vec![StoredThumbnail::new(
            row.id,
            ttype,
            row.public_url.as_deref(),
            row.file_uri.as_deref(),
            row.origin.as_deref(),
            row.survey.as_deref(),
        )],
    };
    String::from_utf8(body.to_json()).unwrap_or_default()
}

/// An event row written in a transaction, to publish after its commit.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub routing_key: &'static str,
    pub body: String,
}

/// Inserts the event row inside the caller's transaction, keeping the body
/// to publish after the commit. `created_at` is the database's clock (UTC),
/// the one the relay ages by.
pub async fn enqueue_pending<C: ConnectionTrait>(
    txn: &C,
    routing_key: &'static str,
    body: String,
) -> Result<Pending, DbErr> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("INSERT INTO {TABLE} (routing_key, body, created_at) VALUES ($1, $2, now() AT TIME ZONE 'UTC') RETURNING id"),
            [routing_key.into(), body.as_str().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)?;
    Ok(Pending {
        id: row.try_get_by_index::<i64>(0)?,
        routing_key,
        body,
    })
}

type DeleteRequest = (i64, oneshot::Sender<Result<(), String>>);

/// Deletes published events: every request waiting at the same moment
/// shares one `DELETE` (one round trip, one commit).
#[derive(Clone)]
pub struct Deleter {
    tx: mpsc::UnboundedSender<DeleteRequest>,
}

impl Deleter {
    /// Starts the deleting task; it ends when the last `Deleter` is dropped.
    pub fn spawn(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(delete_loop(db, rx));
        Self { tx }
    }

    /// Deletes the row of a confirmed event; returns once it is committed.
    pub async fn delete(&self, id: i64) -> Result<(), OutboxError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((id, done))
            .map_err(|_| OutboxError::Deleter("stopped".into()))?;
        answer
            .await
            .map_err(|_| OutboxError::Deleter("stopped".into()))?
            .map_err(OutboxError::Deleter)
    }
}

async fn delete_loop(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<DeleteRequest>) {
    let mut batch = Vec::with_capacity(DELETE_BATCH);
    while rx.recv_many(&mut batch, DELETE_BATCH).await > 0 {
        // A Postgres array literal of integers, bound as one text parameter:
        // one prepared statement whatever the batch size.
        let ids = batch
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("DELETE FROM {TABLE} WHERE id = ANY($1::bigint[])"),
                [format!("{{{ids}}}").into()],
            ))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}

/// Publishes a committed event from memory, then deletes its row. On any
/// failure, or while the broker blocks publishing (the request answers
/// without waiting for the alarm), the row stays for the relay.
pub async fn publish_pending(
    bus: &BusLink,
    deleter: &Deleter,
    event: &Pending,
) -> Result<(), OutboxError> {
    bus.publish_unless_blocked(event.routing_key, event.body.as_bytes())
        .await?;
    deleter.delete(event.id).await
}

/// Claims rows (locked, so that a concurrent relay skips them), publishes
/// them, and deletes them only if every publish was confirmed. Returns how
/// many were published.
async fn claim_and_publish(
    db: &DatabaseConnection,
    bus: &BusLink,
    claim: Statement,
) -> Result<usize, OutboxError> {
    let txn = db.begin().await?;
    let rows = txn.query_all_raw(claim).await?;
    let events = rows
        .iter()
        .map(|row| Ok((row.try_get_by_index(1)?, row.try_get_by_index(2)?)))
        .collect::<Result<Vec<(String, String)>, DbErr>>()?;
    // Published together (in order on the one channel), confirmed together;
    // an error drops the transaction: the rows stay for the relay.
    try_join_all(
        events
            .iter()
            .map(|(key, body)| bus.publish(key, body.as_bytes())),
    )
    .await?;
    txn.commit().await?;
    Ok(events.len())
}

/// Publishes every leftover event, oldest first.
pub async fn relay(db: &DatabaseConnection, bus: &BusLink) -> Result<usize, OutboxError> {
    relay_older_than(db, bus, Duration::ZERO).await
}

/// Publishes every leftover event at least `min_age` old, oldest first.
pub async fn relay_older_than(
    db: &DatabaseConnection,
    bus: &BusLink,
    min_age: Duration,
) -> Result<usize, OutboxError> {
    let mut total = 0;
    loop {
        let claim = Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "DELETE FROM {TABLE} WHERE id IN
                   (SELECT id FROM {TABLE}
                    WHERE created_at <= (now() AT TIME ZONE 'UTC') - make_interval(secs => $2)
                    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, routing_key, body"
            ),
            [RELAY_BATCH.into(), min_age.as_secs_f64().into()],
        );
        let n = claim_and_publish(db, bus, claim).await?;
        total += n;
        if n < RELAY_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Runs [`relay`] every `interval` until `shutdown`; while the database is
/// away, sooner (doubling up to `interval`), so that the events left
/// meanwhile go out within about a second of its return.
pub async fn relay_loop(
    db: DatabaseConnection,
    bus: Arc<BusLink>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let outage = Outage::new(component::OUTBOX);
    let (mut wait, mut rounds_down) = (interval, 0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match relay_older_than(&db, &bus, RELAY_MIN_AGE).await {
            Ok(n) => {
                outage.recovered();
                if n > 0 {
                    tracing::info!(events = n, "republished outbox events");
                }
            }
            Err(OutboxError::Db(e)) if is_connection(&e) => {
                metrics::counter!("thumbnails_outbox_relay_failures_total").increment(1);
                outage.failed(&e);
            }
            Err(e) => {
                metrics::counter!("thumbnails_outbox_relay_failures_total").increment(1);
                tracing::warn!(error = %crate::telemetry::cause_chain(&e), "outbox relay failed; will retry");
            }
        }
        wait = Backoff::UNTIL_STOPPED.round_wait(&outage, &mut rounds_down, interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_event_has_the_contract_shape() {
        let now = chrono::Utc::now().naive_utc();
        let mut row = thumbnail::Model {
            id: 12,
            created_at: now,
            modified: now,
            ttype: Some(thumbnail::DbType::New),
            file_uri: Some("/srv/thumbnails/aa/bb/X_new.png".into()),
            public_url: Some("/static/thumbnails/aa/bb/X_new.png".into()),
            origin: Some("upload".into()),
            survey: Some("ZTF".into()),
            is_grayscale: Some(true),
            obj_id: "X".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&stored_event(&row)).expect("json");
        assert_eq!(
            v,
            json!({"obj_id": "X", "thumbnails": [{"id": 12, "type": "new",
                "public_url": "/static/thumbnails/aa/bb/X_new.png",
                "file_uri": "/srv/thumbnails/aa/bb/X_new.png", "origin": "upload",
                "survey": "ZTF"}]})
        );
        row.origin = None;
        let v: serde_json::Value = serde_json::from_str(&stored_event(&row)).expect("json");
        assert_eq!(v["thumbnails"][0]["origin"], "survey");
    }
}
