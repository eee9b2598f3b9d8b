//! The supervised consumer loop: connect, declare, consume; on any broker
//! error reconnect with backoff (lapin's own recovery is not relied on,
//! amqp-rs/lapin#450); on shutdown stop consuming and drain in-flight work.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acker::{AckToken, Acker};
use super::{declare, Brokers, BusError, Publisher, Topology};

#[derive(Clone)]
pub struct ConsumerSettings {
    /// `amqp.url` (one node or several) with its TLS and password
    /// settings; a reconnect tries the node after the one it lost first.
    pub brokers: Brokers,
    /// Connection name shown by the broker, so one connection can be found.
    pub connection_name: String,
    pub topology: Topology,
    pub prefetch: u16,
    /// How long in-flight deliveries may take to finish after shutdown.
    pub drain_timeout: Duration,
}

impl std::fmt::Debug for ConsumerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSettings")
            .field("brokers", &self.brokers)
            .field("connection_name", &self.connection_name)
            .field("topology", &self.topology)
            .field("prefetch", &self.prefetch)
            .field("drain_timeout", &self.drain_timeout)
            .finish()
    }
}

/// What a delivery handler gets besides the delivery: the publisher of the
/// connection the delivery came on (its acker dies with that connection).
pub struct Session {
    pub publisher: Publisher,
    pub topology: Topology,
    /// Acks of this channel's deliveries, batched.
    pub acker: Acker,
    /// Dead-letter copies being published at once. A copy the broker
    /// holds whose delivery is not yet acked is dead-lettered again if the
    /// process dies, so few are in flight and each is acked at once.
    pub dead_letters: tokio::sync::Semaphore,
}

/// Dead-letter copies in flight at once per session (see
/// [`Session::dead_letters`]).
pub const DEAD_LETTERS_IN_FLIGHT: usize = 4;

/// Consumes `settings.topology.queue` until `shutdown` fires. The first
/// connection must succeed (a bad address is reported at start); later
/// losses are survived by connecting to the next node that answers
/// (re-declaring the topology there). Errors that no reconnect can cure
/// ([`BusError::is_fatal`]) end the loop.
pub async fn consume<H, Fut>(
    settings: ConsumerSettings,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), BusError>
where
    H: Fn(Delivery, AckToken, Arc<Session>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let brokers = settings.brokers.clone();
    let mut conn = Some(brokers.connect(&settings.connection_name).await?);
    let mut lost_at: Option<tokio::time::Instant> = None;
    let mut backoff = Backoff::default();
    // Set once the queue is consumed: a refusal before that is fatal.
    let mut consumed = false;
    let mut refused_wait: Option<Duration> = None;
    loop {
        let connection = match conn.take() {
            Some(c) => c,
            None => {
                let wait = refused_wait.take().unwrap_or_else(|| backoff.next());
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                match brokers.connect(&settings.connection_name).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = backoff.peek().as_secs_f64(), "reconnect failed");
                        continue;
                    }
                }
            }
        };
        let queue = settings.topology.queue.clone();
        let on_consume = || {
            consumed = true;
            super::refusal::Refusals::clear(&queue);
            if let Some(t) = lost_at.take() {
                tracing::info!(
                    queue = %settings.topology.queue,
                    after_s = t.elapsed().as_secs_f64(),
                    "consuming again after a lost connection"
                );
            }
        };
        let session = run_session(
            &settings,
            &connection,
            &shutdown,
            &tracker,
            &handler,
            on_consume,
        )
        .await;
        match session {
            Ok(()) => {
                let _ = connection.close(200, "shutdown".into()).await;
                return Ok(());
            }
            Err(e) if e.is_fatal() || (e.is_refusal() && !consumed) => {
                let _ = connection.close(200, "stopping".into()).await;
                tracker.close();
                let _ = tokio::time::timeout(settings.drain_timeout, tracker.wait()).await;
                return Err(e);
            }
            Err(e) if e.is_refusal() => {
                // Another service redeclared the queue (say): nothing to do
                // but wait for the operator, saying so on each attempt.
                let wait = backoff.next_refused();
                tracing::warn!(queue = %settings.topology.queue, retry_in_s = wait.as_secs_f64(), "{e}");
                super::refusal::Refusals::set(&settings.topology.queue, &e.to_string());
                refused_wait = Some(wait);
                lost_at.get_or_insert_with(tokio::time::Instant::now);
                let _ = connection.close(200, "refused".into()).await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lost the broker; reconnecting (unacked messages return to the queue)");
                lost_at.get_or_insert_with(tokio::time::Instant::now);
                let _ = connection.close(320, "reconnecting".into()).await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
        }
        backoff.reset_if_stable();
    }
    tracker.close();
    let _ = tokio::time::timeout(settings.drain_timeout, tracker.wait()).await;
    Ok(())
}

/// One connection's life. `Ok` means shutdown was asked for; `Err` means the
/// connection or consumer was lost and should be re-established.
async fn run_session<H, Fut>(
    settings: &ConsumerSettings,
    connection: &Connection,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    handler: &H,
    on_consume: impl FnOnce(),
) -> Result<(), BusError>
where
    H: Fn(Delivery, AckToken, Arc<Session>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let channel = connection.create_channel().await?;
    declare(&channel, &settings.topology).await?;
    // Per-consumer (not global) QoS: global is refused on quorum queues.
    channel
        .basic_qos(settings.prefetch, BasicQosOptions { global: false })
        .await?;
    let session = Arc::new(Session {
        publisher: Publisher::open(connection, &settings.topology.exchange).await?,
        topology: settings.topology.clone(),
        acker: Acker::spawn(channel.clone()),
        dead_letters: tokio::sync::Semaphore::new(DEAD_LETTERS_IN_FLIGHT),
    });
    let tag = format!(
        "{}-{}",
        settings.connection_name,
        uuid::Uuid::new_v4().simple()
    );
    let mut consumer = channel
        .basic_consume(
            settings.topology.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %settings.topology.queue, "consuming");
    on_consume();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                // In-flight deliveries finish and ack on this channel, which
                // must stay open until then (dropping a channel closes it).
                tracker.close();
                if tokio::time::timeout(settings.drain_timeout, tracker.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "in-flight deliveries did not finish in time; the broker will redeliver them"
                    );
                }
                session.acker.flush().await;
                session.publisher.close().await;
                let _ = channel.close(200, "shutdown".into()).await;
                return Ok(());
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let ack = session.acker.token(delivery.delivery_tag);
                    tracker.spawn(handler(delivery, ack, session.clone()));
                }
                Some(Err(e)) => return Err(e.into()),
                // A broker-side cancel ends the stream: resubscribe.
                None => return Err(BusError::ConsumerCancelled),
            }
        }
    }
}

/// Exponential backoff from 100 ms to 10 s.
#[derive(Debug)]
struct Backoff {
    current: Duration,
    last_failure: Option<tokio::time::Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            current: Duration::from_millis(100),
            last_failure: None,
        }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.current;
        self.current = (self.current * 2).min(Duration::from_secs(10));
        self.last_failure = Some(tokio::time::Instant::now());
        wait
    }

    /// For a refusal: doubling up to a minute (an operator must act).
    fn next_refused(&mut self) -> Duration {
        let wait = self.current;
        self.current = (self.current * 2).min(Duration::from_secs(60));
        self.last_failure = Some(tokio::time::Instant::now());
        wait
    }

    fn peek(&self) -> Duration {
        self.current
    }

    /// A connection that lived a minute resets the backoff.
    fn reset_if_stable(&mut self) {
        if let Some(t) = self.last_failure {
            if t.elapsed() > Duration::from_secs(60) {
                *self = Self::default();
            }
        }
    }
}
