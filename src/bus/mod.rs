//! RabbitMQ through lapin: connection, topology, publisher with confirms and
//! a supervised consumer loop.

mod acker;
mod consumer;
pub mod events;
mod link;
pub mod publisher;
mod topology;

pub use acker::{AckToken, Acker};
pub use consumer::{consume, ConsumerSettings, Session};
pub use events::{ObjCreated, StoredThumbnail, ThumbnailStored, ORIGIN_SURVEY, ORIGIN_UPLOAD};
pub use link::BusLink;
pub use publisher::{Publisher, PublisherConnection};
pub use topology::{
    declare, Topology, ROUTING_ALERT_CUTOUTS, ROUTING_OBJ_CREATED, ROUTING_OBJ_UPDATED,
    ROUTING_THUMBNAIL_STORED,
};

use lapin::{Connection, ConnectionProperties};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (nack) for {0}")]
    Nacked(String),
    #[error("the broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the broker cancelled the consumer")]
    ConsumerCancelled,
    #[error("no queue is bound to routing key {0} on exchange {1}")]
    Unroutable(String, String),
}

/// Opens a connection whose name (shown by `rabbitmqctl list_connections
/// name client_properties`) lets operators and tests find it.
pub async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, props)
        .await
        .map_err(|source| BusError::Connect {
            url: crate::config::redact(url),
            source,
        })
}
