//! RabbitMQ through lapin: connection, topology, publisher with confirms and
//! a supervised consumer loop.

mod access;
mod acker;
pub mod blocked;
mod brokers;
mod consumer;
pub mod dead_letters;
pub mod events;
mod link;
pub mod publisher;
pub mod refusal;
mod topology;

pub use acker::{AckToken, Acker};
pub use brokers::Brokers;
pub use consumer::{consume, ConsumerSettings, Session};
pub use events::{ObjCreated, StoredThumbnail, ThumbnailStored, ORIGIN_SURVEY, ORIGIN_UPLOAD};
pub use link::BusLink;
pub use publisher::{Publisher, PublisherConnection};
pub use topology::{
    declare, passive_declare, Topology, DEAD_QUEUE_GROUP_SIZE, ROUTING_ALERT_CUTOUTS,
    ROUTING_OBJ_CREATED, ROUTING_OBJ_UPDATED, ROUTING_THUMBNAIL_STORED,
};

use lapin::Connection;

use crate::config::AmqpConfig;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Every node of `amqp.url` refused: each address (password removed)
    /// with its failure.
    #[error("cannot connect to RabbitMQ at {tried}")]
    Connect { tried: String },
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack) for {0}")]
    Nacked(String),
    #[error(
        "the broker blocks publishing (a memory or disk alarm); the event waits for it to clear"
    )]
    Blocked,
    #[error("the broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the broker cancelled the consumer")]
    ConsumerCancelled,
    #[error("no queue is bound to routing key {0} on exchange {1}")]
    Unroutable(String, String),
    /// A dead-letter queue declared by an older version as a classic queue
    /// (this version declares it as a quorum queue, and a queue's type
    /// cannot change in place).
    #[error("{queue} is a classic queue; this version keeps dead letters in a quorum queue: run `thumbnails dead-letters migrate` (see docs/cluster.md)")]
    ClassicDeadQueue { queue: String },
    /// A declaration the broker refuses for good (see [`refusal`]).
    #[error("RabbitMQ refuses {what}: {message}; {way_out}")]
    Refused {
        what: String,
        message: String,
        way_out: String,
    },
}

impl BusError {
    /// Errors that reconnecting cannot cure: the consumer stops on them.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::ClassicDeadQueue { .. })
    }

    /// A declaration refused for good: fatal at start; while running, the
    /// consumer waits for the operator (another service may have
    /// redeclared the queue).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// Opens a connection whose name (shown by `rabbitmqctl list_connections
/// name client_properties`) lets operators and tests find it. `urls` is
/// `amqp.url`: the nodes are tried in order; the first that answers wins.
/// Long-lived users keep a [`Brokers`] instead, so that a reconnect starts
/// with another node.
pub async fn connect(urls: &str, name: &str) -> Result<Connection, BusError> {
    Brokers::new(urls).connect(name).await
}

/// [`connect`] to the service's nodes, with `amqp.tls` and `amqp.password_file`.
pub async fn connect_config(amqp: &AmqpConfig, name: &str) -> Result<Connection, BusError> {
    Brokers::from_config(amqp).connect(name).await
}
