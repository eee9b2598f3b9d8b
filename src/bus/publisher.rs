//! Publishing with publisher confirms, one answer per message.

use futures_util::future::try_join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionStatus};

use super::{declare, Brokers, BusError, Topology};

/// A confirm-mode channel. Cheap to clone; all clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    exchange: String,
    /// The connection's state: blocked by a resource alarm or not.
    status: ConnectionStatus,
}

/// A connection of its own with one publisher on the service exchange,
/// for the tools and the sidecar (the worker publishes on its consumer's
/// connection).
pub struct PublisherConnection {
    conn: Connection,
    publisher: Publisher,
}

impl PublisherConnection {
    /// Connects (`url`: URLs alone, see [`Brokers::new`]; the first node
    /// that answers), declares the topology (so that the worker's queue
    /// exists and mandatory publishes are routed) and opens a confirm channel.
    pub async fn open(url: &str, name: &str, topology: &Topology) -> Result<Self, BusError> {
        Self::open_on(&Brokers::new(url), name, topology).await
    }

    /// [`Self::open`] on the service's nodes (`amqp.url` with `amqp.tls`
    /// and `amqp.password_file`).
    pub async fn open_config(
        amqp: &crate::config::AmqpConfig,
        name: &str,
        topology: &Topology,
    ) -> Result<Self, BusError> {
        Self::open_on(&Brokers::from_config(amqp), name, topology).await
    }

    /// [`Self::open`] on a kept node list: a reopen after a lost connection
    /// starts with the next node.
    pub async fn open_on(
        brokers: &Brokers,
        name: &str,
        topology: &Topology,
    ) -> Result<Self, BusError> {
        let conn = brokers.connect(name).await?;
        let channel = conn.create_channel().await?;
        declare(&channel, topology).await?;
        let _ = channel.close(200, "declared".into()).await;
        let publisher = Publisher::open(&conn, &topology.exchange).await?;
        Ok(Self { conn, publisher })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Closes the publisher's channel, then the connection.
    pub async fn close(self, reason: &str) {
        self.publisher.close().await;
        let _ = self.conn.close(200, reason.into()).await;
    }
}

/// What to publish: routing key, JSON body, headers.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub headers: FieldTable,
    /// An unroutable message is an error (rather than silently dropped).
    pub mandatory: bool,
}

impl Publisher {
    pub async fn open(conn: &Connection, exchange: &str) -> Result<Self, BusError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: exchange.into(),
            status: conn.status().clone(),
        })
    }

    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The state of the publisher's connection (`blocked()` under a
    /// broker's resource alarm, see [`super::blocked`]).
    pub fn status(&self) -> &ConnectionStatus {
        &self.status
    }

    /// Closes the channel (for every clone). Close publishers before their
    /// connection: lapin logs an error for channels still open then.
    pub async fn close(&self) {
        let _ = self.channel.close(200, "done".into()).await;
    }

    /// Publishes persistent JSON to the service exchange and waits for the
    /// broker's confirm.
    pub async fn publish_json(
        &self,
        routing_key: &str,
        body: &[u8],
        mandatory: bool,
    ) -> Result<(), BusError> {
        self.publish(Outgoing {
            exchange: &self.exchange,
            routing_key,
            body,
            headers: FieldTable::default(),
            mandatory,
        })
        .await
    }

    /// Publishes many bodies to one routing key, pipelined, and waits for
    /// every confirm.
    pub async fn publish_many(
        &self,
        routing_key: &str,
        bodies: &[Vec<u8>],
        mandatory: bool,
    ) -> Result<(), BusError> {
        try_join_all(
            bodies
                .iter()
                .map(|b| self.publish_json(routing_key, b, mandatory)),
        )
        .await?;
        Ok(())
    }

    pub async fn publish(&self, msg: Outgoing<'_>) -> Result<(), BusError> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(msg.headers);
        let confirm = self
            .channel
            .basic_publish(
                msg.exchange.into(),
                msg.routing_key.into(),
                BasicPublishOptions {
                    mandatory: msg.mandatory,
                    ..Default::default()
                },
                msg.body,
                props,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BusError::Unroutable(
                msg.routing_key.into(),
                msg.exchange.into(),
            )),
            Confirmation::Nack(_) => Err(BusError::Nacked(msg.routing_key.into())),
        }
    }
}

/// A string header value.
pub fn header(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}
