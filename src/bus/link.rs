//! A link to the broker: one lazily (re)connected confirm-mode publisher,
//! used by the sidecar's upload path and outbox relay, the database feed
//! and the worker's PS1 retries.

use std::time::Duration;

use tokio::sync::Mutex;

use super::{Brokers, BusError, Publisher, PublisherConnection, Topology};
use crate::config::AmqpConfig;

/// How long a publish may wait for the broker's confirm.
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

    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), BusError> {
        let publisher = tokio::time::timeout(CONNECT_TIMEOUT, self.publisher())
            .await
            .map_err(|_| BusError::Timeout(CONNECT_TIMEOUT))??;
        // Not mandatory: nobody listening for thumbnail.stored is not an error.
        let result = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            publisher.publish_json(routing_key, body, false),
        )
        .await;
        match result {
            Ok(Ok(())) => {
                metrics::counter!("thumbnails_events_published_total", "routing_key" => routing_key.to_string())
                    .increment(1);
                Ok(())
            }
            Ok(Err(e)) => {
                self.reset().await;
                Err(e)
            }
            Err(_) => {
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
