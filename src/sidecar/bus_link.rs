//! The sidecar's link to the broker: one lazily (re)connected
//! confirm-mode publisher, used by the upload path and the outbox relay.

use std::time::Duration;

use lapin::Connection;
use tokio::sync::Mutex;

use super::outbox::OutboxError;
use crate::bus::{self, BusError, Publisher, Topology};
use crate::config::AmqpConfig;

/// How long a publish may wait for the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long (re)connecting to the broker may take before a publish gives up
/// (the event stays in the outbox).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily (re)connected confirm-mode publisher on the service exchange.
pub struct BusLink {
    url: String,
    topology: Topology,
    name: String,
    link: Mutex<Option<(Connection, Publisher)>>,
}

impl BusLink {
    /// Connects at once, so that a wrong address is reported at start.
    pub async fn connect(amqp: &AmqpConfig, name: &str) -> Result<Self, BusError> {
        let me = Self {
            url: amqp.url.clone(),
            topology: Topology::new(&amqp.exchange, &amqp.queue),
            name: name.to_string(),
            link: Mutex::new(None),
        };
        me.publisher().await?;
        Ok(me)
    }

    async fn publisher(&self) -> Result<Publisher, BusError> {
        let mut link = self.link.lock().await;
        if let Some((conn, publisher)) = link.as_ref() {
            if conn.status().connected() {
                return Ok(publisher.clone());
            }
        }
        let conn = bus::connect(&self.url, &self.name).await?;
        let channel = conn.create_channel().await?;
        bus::declare(&channel, &self.topology).await?;
        let _ = channel.close(200, "declared".into()).await;
        let publisher = Publisher::open(&conn, &self.topology.exchange).await?;
        *link = Some((conn, publisher.clone()));
        Ok(publisher)
    }

    /// Forgets the connection so the next publish reconnects.
    async fn reset(&self) {
        if let Some((conn, _)) = self.link.lock().await.take() {
            let _ = conn.close(200, "reconnecting".into()).await;
        }
    }

    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), OutboxError> {
        let publisher = tokio::time::timeout(CONNECT_TIMEOUT, self.publisher())
            .await
            .map_err(|_| OutboxError::Timeout(CONNECT_TIMEOUT))??;
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
                Err(e.into())
            }
            Err(_) => {
                self.reset().await;
                Err(OutboxError::Timeout(PUBLISH_TIMEOUT))
            }
        }
    }

    /// Whether the broker answers (reconnecting if needed).
    pub async fn ready(&self) -> Result<(), BusError> {
        self.publisher().await.map(|_| ())
    }

    pub async fn close(&self) {
        if let Some((conn, _)) = self.link.lock().await.take() {
            let _ = conn.close(200, "shutdown".into()).await;
        }
    }
}
