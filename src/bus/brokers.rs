//! The broker's node addresses (`amqp.url`: one URL, or several separated
//! by commas) and connecting to whichever answers first. A connection that
//! is opened again (after its node died) starts with the next node, so
//! reconnects go round the list instead of hammering a dead node first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use super::access::Access;
use super::BusError;
use crate::config::{redact, split_urls, AmqpConfig};

/// How long one node may take to accept a connection before the next is
/// tried (a dead host on a real network can hold a TCP connect for minutes).
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The nodes to try, and where the next attempt starts. Clones share the
/// position.
#[derive(Clone)]
pub struct Brokers {
    urls: Arc<[String]>,
    next: Arc<AtomicUsize>,
    access: Arc<Access>,
}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.urls.iter().map(|u| redact(u)))
            .finish()
    }
}

impl Brokers {
    /// The service's nodes: `amqp.url` with `amqp.tls` and
    /// `amqp.password_file`.
    pub fn from_config(amqp: &AmqpConfig) -> Self {
        Self {
            access: Arc::new(Access::from_config(amqp)),
            ..Self::new(&amqp.url)
        }
    }

    /// Nodes from URLs alone (`amqps://` ones checked against the system's
    /// roots, without a client certificate): for tests and tools that hold
    /// only a URL. `list` is URLs separated by commas.
    pub fn new(list: &str) -> Self {
        Self {
            urls: split_urls(list).into(),
            next: Arc::new(AtomicUsize::new(0)),
            access: Arc::new(Access::default()),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Tries every node once, starting after the node of the previous
    /// successful connection; the first that answers wins. The error names
    /// every address tried (passwords removed) with its failure.
    pub async fn connect(&self, name: &str) -> Result<Connection, BusError> {
        let n = self.urls.len();
        let start = self.next.load(Ordering::Relaxed);
        let mut failures = Vec::with_capacity(n);
        for k in 0..n {
            let i = (start + k) % n;
            let url = &self.urls[i];
            let props = ConnectionProperties::default().with_connection_name(name.into());
            let outcome =
                tokio::time::timeout(NODE_CONNECT_TIMEOUT, self.connect_one(url, props)).await;
            match outcome {
                Ok(Ok(conn)) => {
                    super::blocked::watch(&conn, name);
                    // The next connection (a reconnect: this one was lost)
                    // starts with the following node.
                    self.next.store((i + 1) % n, Ordering::Relaxed);
                    if k > 0 {
                        tracing::info!(broker = %redact(url), tried = k + 1, "connected to another node");
                    }
                    return Ok(conn);
                }
                Ok(Err(why)) => failures.push(format!("{} ({why})", redact(url))),
                Err(_) => failures.push(format!(
                    "{} (no answer within {NODE_CONNECT_TIMEOUT:?})",
                    redact(url)
                )),
            }
        }
        if failures.is_empty() {
            failures.push("amqp.url lists no address".into());
        }
        Err(BusError::Connect {
            tried: failures.join(", "),
        })
    }

    /// One node; the failure in words (never with the password).
    async fn connect_one(
        &self,
        url: &str,
        props: ConnectionProperties,
    ) -> Result<Connection, String> {
        let uri = self.access.uri(url)?;
        let tls = self.access.tls_config(&uri)?;
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        Connection::connect_uri_with_config(uri.clone(), props, tls, runtime)
            .await
            .map_err(|e| self.access.describe(&uri, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_error_names_every_node_without_passwords() {
        // Ports nothing listens on: refused at once.
        let list = "amqp://u:secret1@127.0.0.1:1/%2f, amqp://u:secret2@127.0.0.1:2/%2f";
        let brokers = Brokers::new(list);
        assert_eq!(brokers.urls().len(), 2);
        let e = brokers.connect("test").await.expect_err("nothing listens");
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:1/"), "{text}");
        assert!(text.contains("127.0.0.1:2/"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn debug_hides_passwords() {
        let brokers = Brokers::new("amqp://u:pw@a:1/%2f,amqp://u:pw@b:2/%2f");
        let shown = format!("{brokers:?}");
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(shown.contains("b:2"), "{shown}");
    }
}
