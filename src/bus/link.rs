//! A link to the broker: one lazily (re)connected confirm-mode publisher,
//! used by the sidecar's upload path and outbox relay, the database feed
//! and the worker's PS1 retries.

use std::time::Duration;

use tokio::sync::Mutex;

use super::blocked::ConfirmClock;
use super::{Brokers, BusError, Publisher, PublisherConnection, Topology};
use crate::config::AmqpConfig;

/// What a publish does while the broker blocks its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenBlocked {
    Wait,
    Leave,
}

/// How long a publish may wait for the broker's confirm (time the broker
/// blocks the connection under an alarm does not count).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long (re)connecting to the broker may take before a publish gives up
/// (the event stays in the outbox).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily (re)connected confirm-mode publisher on the service exchange.
/// With several nodes in `amqp.url`, a reconnect starts with the node after
/// the one it lost. A publish whose confirm never came (its node died) is an
/// error: the caller keeps the event (outbox, PS1 retry row) and sends it
/// again, so it may arrive twice but is never lost.
pub struct BusLink {
    brokers: Brokers,
    topology: Topology,
    name: String,
    link: Mutex<Option<PublisherConnection>>,
}

impl BusLink {
    /// Connects at once, so that a wrong address is reported at start.
    pub async fn connect(amqp: &AmqpConfig, name: &str) -> Result<Self, BusError> {
        let me = Self {
            brokers: Brokers::from_config(amqp),
            topology: Topology::new(&amqp.exchange, &amqp.queue),
            name: name.to_string(),
            link: Mutex::new(None),
        };
        me.publisher().await?;
        Ok(me)
    }

    /// The publisher of the current connection, (re)connecting first if
    /// needed; for callers that publish pages themselves (the feed). After
    /// a failed publish, [`Self::reset`].
    pub async fn publisher(&self) -> Result<Publisher, BusError> {
        let mut link = self.link.lock().await;
        if let Some(open) = link.as_ref() {
            if open.is_connected() {
                return Ok(open.publisher().clone());
            }
        }
        let open = PublisherConnection::open_on(&self.brokers, &self.name, &self.topology).await?;
        let publisher = open.publisher().clone();
        *link = Some(open);
        Ok(publisher)
    }

    /// Forgets the connection so the next publish reconnects.
    pub async fn reset(&self) {
        if let Some(open) = self.link.lock().await.take() {
            open.close("reconnecting").await;
        }
    }

    /// Publishes and waits for the confirm; while the broker blocks the
    /// connection (a resource alarm), however long that is (the relays and
    /// the PS1 retries: they have nothing better to do).
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), BusError> {
        self.send(routing_key, body, WhenBlocked::Wait).await
    }

    /// For a request that must answer (an upload): fails with
    /// [`BusError::Blocked`] at once, without sending, while the broker
    /// blocks the connection, and stops waiting if it starts blocking
    /// meanwhile. The caller's event stays in its outbox for the relay (a
    /// publish left waiting may then arrive twice, never zero times).
    pub async fn publish_unless_blocked(
        &self,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), BusError> {
        self.send(routing_key, body, WhenBlocked::Leave).await
    }

    async fn send(
        &self,
        routing_key: &str,
        body: &[u8],
        hold: WhenBlocked,
    ) -> Result<(), BusError> {
        let publisher = tokio::time::timeout(CONNECT_TIMEOUT, self.publisher())
            .await
            .map_err(|_| BusError::Timeout(CONNECT_TIMEOUT))??;
        let mut clock = ConfirmClock::start(publisher.status());
        let leave = |clock: &ConfirmClock| hold == WhenBlocked::Leave && clock.is_blocked();
        if leave(&clock) {
            return Err(BusError::Blocked);
        }
        // Not mandatory: nobody listening for thumbnail.stored is not an error.
        let publish = publisher.publish_json(routing_key, body, false);
        tokio::pin!(publish);
        let mut tick = tokio::time::interval(ConfirmClock::TICK);
        let result = loop {
            tokio::select! {
                r = &mut publish => break Some(r),
                _ = tick.tick() => {
                    // The connection is fine, only held: no reset.
                    if leave(&clock) {
                        return Err(BusError::Blocked);
                    }
                    if clock.expired(PUBLISH_TIMEOUT) {
                        break None;
                    }
                }
            }
        };
        match result {
            Some(Ok(())) => {
                metrics::counter!("thumbnails_events_published_total", "routing_key" => routing_key.to_string())
                    .increment(1);
                Ok(())
            }
            Some(Err(e)) => {
                self.reset().await;
                Err(e)
            }
            None => {
                self.reset().await;
                Err(BusError::Timeout(PUBLISH_TIMEOUT))
            }
        }
    }

    /// Whether the broker answers (reconnecting if needed).
    pub async fn ready(&self) -> Result<(), BusError> {
        self.publisher().await.map(|_| ())
    }

    pub async fn close(&self) {
        if let Some(open) = self.link.lock().await.take() {
            open.close("shutdown").await;
        }
    }
}
