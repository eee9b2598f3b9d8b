//! Exchange and queue declarations, idempotent and re-run after reconnects.
//! Arguments must stay stable: re-declaring with different `x-` arguments
//! fails with PRECONDITION_FAILED and closes the channel.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::BusError;

pub const ROUTING_OBJ_CREATED: &str = "obj.created";
pub const ROUTING_THUMBNAIL_STORED: &str = "thumbnail.stored";
/// Same body as `obj.created`: the object's position changed, so its survey
/// rows are rewritten (published by the database feed).
pub const ROUTING_OBJ_UPDATED: &str = "obj.updated";
/// An alert's FITS cutouts (JSON, or a whole ZTF Avro packet) to draw into
/// `new`/`ref`/`sub` stamps; consumed from a queue of its own.
pub const ROUTING_ALERT_CUTOUTS: &str = "alert.cutouts";

/// Members of a newly declared dead-letter queue: a quorum queue on three
/// nodes survives the loss of one (on a smaller cluster, or a single node,
/// it has as many members as there are nodes).
pub const DEAD_QUEUE_GROUP_SIZE: i64 = 3;

/// Deliveries beyond this many attempts go to the dead-letter queue by the
/// broker itself (a crash loop on one message must end somewhere).
const DELIVERY_LIMIT: i64 = 50;

/// Names derived from `amqp.exchange` and `amqp.queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Durable topic exchange carrying `obj.created` and `thumbnail.stored`.
    pub exchange: String,
    /// Durable quorum queue bound to [`Self::bindings`].
    pub queue: String,
    /// Routing keys the queue takes.
    pub bindings: &'static [&'static str],
}

impl Topology {
    /// The worker's object queue: `obj.created` and `obj.updated`.
    pub fn new(exchange: &str, queue: &str) -> Self {
        Self {
            exchange: exchange.into(),
            queue: queue.into(),
            bindings: &[ROUTING_OBJ_CREATED, ROUTING_OBJ_UPDATED],
        }
    }

    /// The alert cutouts queue: `alert.cutouts`.
    pub fn cutouts(exchange: &str, queue: &str) -> Self {
        Self {
            exchange: exchange.into(),
            queue: queue.into(),
            bindings: &[ROUTING_ALERT_CUTOUTS],
        }
    }

    /// Direct exchange that routes dead letters to [`Self::dead_queue`].
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.exchange)
    }

    /// Where messages that can never succeed end up, with a reason header.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }
}

/// Declares everything the service uses; safe to call any number of times.
pub async fn declare(channel: &Channel, t: &Topology) -> Result<(), BusError> {
    use super::refusal::{classify, Declared};
    let exchange = |name: String| move |e: lapin::Error| classify(e, Declared::Exchange, &name);
    let queue = |name: String| move |e: lapin::Error| classify(e, Declared::Queue, &name);
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            t.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(exchange(t.exchange.clone()))?;
    channel
        .exchange_declare(
            t.dead_exchange().as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(exchange(t.dead_exchange()))?;

    let queue_opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // The dead-letter queue is read by people, but it must be replicated:
    // a classic queue lives on one node, and while that node is down every
    // declaration of this topology (so every reconnect) fails with
    // NOT_FOUND. Older versions declared it classic; its type cannot change
    // in place, so that is reported with the command that moves it.
    channel
        .queue_declare(
            t.dead_queue().as_str().into(),
            queue_opts,
            dead_queue_args(),
        )
        .await
        .map_err(|e| {
            if is_queue_type_mismatch(&e) {
                BusError::ClassicDeadQueue {
                    queue: t.dead_queue(),
                }
            } else {
                queue(t.dead_queue())(e)
            }
        })?;
    channel
        .queue_bind(
            t.dead_queue().as_str().into(),
            t.dead_exchange().as_str().into(),
            t.dead_queue().as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(queue(t.dead_queue()))?;

    // The worker's queue keeps the arguments it was first declared with
    // (no x-quorum-initial-group-size: adding one to an existing queue is a
    // 406); by default a quorum queue has a member on every node.
    let mut args = FieldTable::default();
    // Replicated, durable, and counts deliveries (needed for the limit).
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    // Broker-side dead-lettering (delivery limit) lands in the same place.
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(t.dead_exchange().as_str().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(t.dead_queue().as_str().into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    channel
        .queue_declare(t.queue.as_str().into(), queue_opts, args)
        .await
        .map_err(queue(t.queue.clone()))?;
    // A binding is additive: queues declared before obj.updated existed
    // just gain it.
    for key in t.bindings {
        channel
            .queue_bind(
                t.queue.as_str().into(),
                t.exchange.as_str().into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// `x-queue-type: quorum` with [`DEAD_QUEUE_GROUP_SIZE`] members.
pub fn dead_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongLongInt(DEAD_QUEUE_GROUP_SIZE),
    );
    args
}

/// The broker's 406 for a queue that exists with another `x-queue-type`
/// (it closes the channel).
pub fn is_queue_type_mismatch(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            amqp.get_id() == 406 && amqp.get_message().as_str().contains("x-queue-type")
        }
        _ => false,
    }
}

/// Asks the broker about `queue` without declaring it: its message and
/// consumer counts, or an error (404 if it does not exist, which closes the
/// channel).
pub async fn passive_declare(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}
