//! The dead-letter queues as the list page (and the `thumbnails_dead_letters`
//! gauge) show them: each queue's message count (a passive declare, as
//! [`crate::bus::dead_letters`] counts) and the reasons
//! (`x-thumbnails-error`) of the last few of its first [`PEEK`] messages,
//! read with `basic.get` and put back with one `basic.nack` (requeue).
//!
//! The read is bounded and cheap: one connection kept open, counts every
//! time, reasons at most once per [`REASONS_TTL`] per queue. A quorum
//! queue counts returns: RabbitMQ 3.x in `x-delivery-count` (no limit by
//! default), 4.0 to 4.2 toward the default delivery limit of 20 (then the
//! message is dropped); 4.3 counts an explicit nack only in
//! `x-acquired-count`, not toward the limit, while a channel closed on
//! unacked messages does count, hence the nack. Reading on every page
//! view would wear messages out on 4.0 to 4.2.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::Connection;
use tokio::sync::Mutex;

use crate::bus::{passive_declare, Brokers, BusError, Topology};
use crate::config::AmqpConfig;

/// Messages read from the head of a queue for their reasons.
pub const PEEK: usize = 20;
/// Reasons shown per queue (the last of those read).
pub const SHOWN: usize = 5;
/// How long reasons read are shown before the queue is read again.
pub const REASONS_TTL: Duration = Duration::from_secs(600);
/// How long the broker may take to answer a page.
const TIMEOUT: Duration = Duration::from_secs(3);
const REASON_HEADER: &str = "x-thumbnails-error";

/// One dead-letter queue's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadQueue {
    pub queue: String,
    /// Messages waiting, or why they could not be counted.
    pub messages: Result<u32, String>,
    /// Reasons of the last few of the first [`PEEK`] messages, oldest first.
    pub reasons: Vec<String>,
    /// Whether the reasons are those of every message (none beyond [`PEEK`]).
    pub reasons_are_newest: bool,
}

pub struct DeadLetters {
    brokers: Brokers,
    /// The connection's name, as `rabbitmqctl list_connections` shows it.
    name: String,
    queues: Vec<String>,
    conn: Mutex<Option<Arc<Connection>>>,
    reasons: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl DeadLetters {
    /// The dead-letter queues of `amqp.queue` and `amqp.cutouts_queue`.
    pub fn new(amqp: &AmqpConfig) -> Self {
        let topologies = [
            Topology::new(&amqp.exchange, &amqp.queue),
            Topology::cutouts(&amqp.exchange, &amqp.cutouts_queue),
        ];
        Self {
            brokers: Brokers::from_config(amqp),
            name: format!("thumbnails-sidecar-preview {}", amqp.exchange),
            queues: topologies.iter().map(Topology::dead_queue).collect(),
            conn: Mutex::new(None),
            reasons: Mutex::new(HashMap::new()),
        }
    }

    /// Every queue's count, and its (cached) reasons `with_reasons`. A
    /// broker that does not answer makes each count an error; the page
    /// still renders.
    pub async fn read(&self, with_reasons: bool) -> Vec<DeadQueue> {
        let mut out = Vec::new();
        for queue in &self.queues {
            let messages = match tokio::time::timeout(TIMEOUT, self.count(queue)).await {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(e)) => {
                    self.forget().await;
                    Err(e.to_string())
                }
                Err(_) => {
                    self.forget().await;
                    Err(format!("the broker did not answer within {TIMEOUT:?}"))
                }
            };
            let n = *messages.as_ref().unwrap_or(&0);
            let reasons = if n == 0 || !with_reasons {
                Vec::new()
            } else {
                self.reasons_of(queue).await
            };
            out.push(DeadQueue {
                queue: queue.clone(),
                messages,
                reasons,
                reasons_are_newest: (n as usize) <= PEEK,
            });
        }
        out
    }

    async fn connection(&self) -> Result<Arc<Connection>, BusError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.brokers.connect(&self.name).await?);
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Closes the connection (at shutdown; a later read reopens one).
    pub async fn close(&self) {
        self.forget().await;
    }

    async fn forget(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c.close(200, "reconnecting".into()).await;
        }
    }

    /// A queue that does not exist (nothing was ever dead-lettered with
    /// this config's names) counts 0.
    async fn count(&self, queue: &str) -> Result<u32, BusError> {
        let channel = self.connection().await?.create_channel().await?;
        let declared = passive_declare(&channel, queue).await;
        let _ = channel.close(200, "counted".into()).await;
        match declared {
            Ok(q) => Ok(q.message_count()),
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Ok(0),
                _ => Err(e.into()),
            },
        }
    }

    async fn reasons_of(&self, queue: &str) -> Vec<String> {
        if let Some((at, r)) = self.reasons.lock().await.get(queue) {
            if at.elapsed() < REASONS_TTL {
                return r.clone();
            }
        }
        let read = match tokio::time::timeout(TIMEOUT, self.peek(queue)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => vec![format!("(the reasons could not be read: {e})")],
            Err(_) => vec!["(the reasons could not be read in time)".into()],
        };
        self.reasons
            .lock()
            .await
            .insert(queue.to_string(), (Instant::now(), read.clone()));
        read
    }

    /// Gets up to [`PEEK`] messages without acking them, keeps the last
    /// [`SHOWN`] reasons, and nacks them all at once with requeue: the
    /// broker puts them back in their order. (Were the nack lost, closing
    /// the channel requeues them too.)
    async fn peek(&self, queue: &str) -> Result<Vec<String>, BusError> {
        let channel = self.connection().await?.create_channel().await?;
        let mut reasons = Vec::new();
        let mut last_tag = None;
        let mut result: Result<(), BusError> = Ok(());
        for _ in 0..PEEK {
            match channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
            {
                Ok(Some(msg)) => {
                    reasons.push(reason_of(&msg.delivery.properties));
                    last_tag = Some(msg.delivery.delivery_tag);
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if let Some(tag) = last_tag {
            let requeue = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            if let Err(e) = channel.basic_nack(tag, requeue).await {
                result = result.and(Err(e.into()));
            }
        }
        let _ = channel.close(200, "peeked".into()).await;
        result?;
        let skip = reasons.len().saturating_sub(SHOWN);
        Ok(reasons.split_off(skip))
    }
}

fn reason_of(properties: &lapin::BasicProperties) -> String {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(REASON_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| format!("(no {REASON_HEADER} header)"))
}
