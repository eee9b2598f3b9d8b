//! Moving a dead-letter queue declared classic (by versions before the
//! cluster support) to a quorum queue of the same name, without losing a
//! message or a moment of dead-lettering:
//!
//! 1. declare `<dead>.migrating` (quorum) and bind it to the dead exchange
//!    with the dead queue's routing key, then unbind the old queue: new dead
//!    letters land in the temporary queue from now on;
//! 2. move every message old -> temporary (get, publish with confirm, then
//!    ack: a crash in between leaves a copy in both, never none);
//! 3. delete the old queue (only if empty), declare it again as a quorum
//!    queue, bind it, unbind the temporary queue, move temporary -> new, and
//!    delete the temporary queue once it is empty.
//!
//! Safe to run again after a stop at any step (it finishes what is left),
//! and while old workers run: some queue is bound to the dead letters'
//! routing key at every moment.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ExchangeKind};

use super::topology::{dead_queue_args, is_queue_type_mismatch};
use super::{BusError, Topology};

/// Suffix of the temporary queue.
const TEMPORARY: &str = ".migrating";

/// What a dead-letter queue is on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadQueueKind {
    Missing,
    Classic,
    Quorum,
}

/// What [`migrate_dead_queue`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadQueueMigration {
    pub queue: String,
    pub found: DeadQueueKind,
    /// Messages in the old queue (and in a temporary one left by an
    /// interrupted run) before the run.
    pub messages: u32,
    /// Messages moved into the quorum queue (0 on a dry run).
    pub moved: u64,
    /// Whether anything was changed.
    pub changed: bool,
}

/// Finds out what `queue` is: a passive declare, then a quorum declare
/// (each on a channel of its own: a refused declare closes its channel).
pub async fn dead_queue_kind(conn: &Connection, queue: &str) -> Result<DeadQueueKind, BusError> {
    if count(conn, queue).await?.is_none() {
        return Ok(DeadQueueKind::Missing);
    }
    let channel = conn.create_channel().await?;
    let declared = channel
        .queue_declare(queue.into(), durable(), dead_queue_args())
        .await;
    let _ = channel.close(200, "checked".into()).await;
    match declared {
        Ok(_) => Ok(DeadQueueKind::Quorum),
        Err(e) if is_queue_type_mismatch(&e) => Ok(DeadQueueKind::Classic),
        Err(e) => Err(e.into()),
    }
}

/// Makes `topology`'s dead-letter queue a quorum queue (see the module doc).
/// With `dry_run`, only reports what it found.
pub async fn migrate_dead_queue(
    conn: &Connection,
    topology: &Topology,
    dry_run: bool,
) -> Result<DeadQueueMigration, BusError> {
    let dead = topology.dead_queue();
    let temporary = format!("{dead}{TEMPORARY}");
    let found = dead_queue_kind(conn, &dead).await?;
    let in_temporary = count(conn, &temporary).await?;
    let mut report = DeadQueueMigration {
        queue: dead.clone(),
        found,
        messages: count(conn, &dead).await?.unwrap_or(0) + in_temporary.unwrap_or(0),
        moved: 0,
        changed: false,
    };
    if dry_run || (found != DeadQueueKind::Classic && in_temporary.is_none()) {
        return Ok(report);
    }
    report.changed = true;
    let exchange = topology.dead_exchange();
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if found == DeadQueueKind::Classic {
        channel
            .queue_declare(temporary.as_str().into(), durable(), dead_queue_args())
            .await?;
        bind(&channel, &temporary, &exchange, &dead).await?;
        channel
            .queue_unbind(
                dead.as_str().into(),
                exchange.as_str().into(),
                dead.as_str().into(),
                FieldTable::default(),
            )
            .await?;
        report.moved += move_all(conn, &dead, &temporary).await?;
        // Only if empty: a message that arrived meanwhile is not deleted
        // (the run stops with an error; run it again).
        channel
            .queue_delete(
                dead.as_str().into(),
                QueueDeleteOptions {
                    if_empty: true,
                    ..Default::default()
                },
            )
            .await?;
    }
    channel
        .queue_declare(dead.as_str().into(), durable(), dead_queue_args())
        .await?;
    bind(&channel, &dead, &exchange, &dead).await?;
    if count(conn, &temporary).await?.is_some() {
        channel
            .queue_unbind(
                temporary.as_str().into(),
                exchange.as_str().into(),
                dead.as_str().into(),
                FieldTable::default(),
            )
            .await?;
        // Moved twice (old -> temporary -> new): counted once. Unbound,
        // the temporary queue gets nothing more; quorum queues refuse
        // `if_empty` deletes (a connection error), so it is checked first.
        let mut back = move_all(conn, &temporary, &dead).await?;
        while count(conn, &temporary).await?.unwrap_or(0) > 0 {
            back += move_all(conn, &temporary, &dead).await?;
        }
        report.moved = report.moved.max(back);
        channel
            .queue_delete(temporary.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let _ = channel.close(200, "migrated".into()).await;
    Ok(report)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Messages in `queue`, or `None` if it does not exist (404 closes the
/// channel, so a channel of its own).
async fn count(conn: &Connection, queue: &str) -> Result<Option<u32>, BusError> {
    let channel = conn.create_channel().await?;
    let declared = crate::bus::passive_declare(&channel, queue).await;
    let _ = channel.close(200, "counted".into()).await;
    match declared {
        Ok(q) => Ok(Some(q.message_count())),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Ok(None),
            _ => Err(e.into()),
        },
    }
}

/// Moves every message of `from` to `to` through the default exchange,
/// keeping its properties (the reason header, `x-death`): each one is acked
/// in `from` only once `to` confirmed it.
async fn move_all(conn: &Connection, from: &str, to: &str) -> Result<u64, BusError> {
    let source = conn.create_channel().await?;
    let sink = conn.create_channel().await?;
    sink.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut moved = 0;
    while let Some(msg) = source
        .basic_get(from.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = msg.delivery;
        let confirm = sink
            .basic_publish(
                "".into(),
                to.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                delivery.properties.clone(),
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(_)) => return Err(BusError::Unroutable(to.into(), "".into())),
            Confirmation::Nack(_) => return Err(BusError::Nacked(to.into())),
        }
        delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    let _ = sink.close(200, "moved".into()).await;
    let _ = source.close(200, "moved".into()).await;
    Ok(moved)
}
