//! A Confluent schema registry (`cutouts.schema_registry_url`), asked for
//! the writer schemas of Rubin packets whose id the service does not ship.
//! Each id is fetched once and kept in the process's [`Schemas`]; an id the
//! registry does not know is a permanent failure, a registry that does not
//! answer a transient one.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::bus::events::{AlertCutouts, Alerts, InvalidAlert, PacketReader};
use crate::cutouts::{CutoutError, Schemas};

const TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that it has no such id: permanent.
    #[error("the schema registry has no schema id {0}")]
    NotFound(u32),
    /// Its schema cannot be used: permanent.
    #[error(transparent)]
    Schema(CutoutError),
    /// No usable answer (down, timeout, 5xx): try again later.
    #[error("the schema registry at {url} does not answer for id {id}: {why}")]
    Unavailable { url: String, id: u32, why: String },
}

/// `GET <url>/schemas/ids/<id>` answers `{"schema": "<JSON text>"}`.
#[derive(Deserialize)]
struct SchemaById {
    schema: String,
}

pub struct SchemaRegistry {
    base: String,
    http: reqwest::Client,
    schemas: Arc<Schemas>,
    /// One fetch at a time: a burst of packets of a new id asks once.
    fetching: tokio::sync::Mutex<()>,
}

impl SchemaRegistry {
    /// `None` when no registry is configured (`url` empty).
    pub fn new(url: &str, schemas: Arc<Schemas>) -> Result<Option<Self>, reqwest::Error> {
        let base = url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()?;
        Ok(Some(Self {
            base: base.to_owned(),
            http,
            schemas,
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Fetches and keeps the schema of `id`, once.
    pub async fn fetch(&self, id: u32) -> Result<(), RegistryError> {
        let _one = self.fetching.lock().await;
        if self.schemas.knows(id) {
            return Ok(());
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let unavailable = |why: String| RegistryError::Unavailable {
            url: self.base.clone(),
            id,
            why,
        };
        let response = self
            .http
            .get(&url)
            .header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound(id));
        }
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        // An answer that is no registry's is a registry not answering.
        let body: SchemaById = serde_json::from_slice(&bytes)
            .map_err(|e| unavailable(format!("not a schema registry answer: {e}")))?;
        self.schemas
            .register(id, &body.schema)
            .map_err(RegistryError::Schema)?;
        tracing::info!(id, registry = %self.base, "schema fetched from the registry");
        Ok(())
    }

    /// [`Self::fetch`], retried with back-off while the registry does not
    /// answer; `None` when `stop` fires first.
    pub async fn fetch_retrying(
        &self,
        id: u32,
        stop: &CancellationToken,
    ) -> Option<Result<(), RegistryError>> {
        let mut wait = FIRST_RETRY;
        loop {
            match self.fetch(id).await {
                Err(e @ RegistryError::Unavailable { .. }) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "schema registry unavailable; holding the alert");
                    metrics::counter!("thumbnails_schema_registry_errors_total").increment(1);
                }
                done => return Some(done),
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(MAX_RETRY);
        }
    }
}

/// Why alerts could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Never readable: dead-letter or 400.
    Invalid(InvalidAlert),
    /// The registry did not answer: try again later (503).
    Unavailable(RegistryError),
    /// Stopped while waiting for the registry.
    Stopped,
}

/// Reads alert bodies, asking the registry for unknown schema ids.
pub struct AlertReader {
    pub packets: PacketReader,
    registry: Option<SchemaRegistry>,
}

impl AlertReader {
    pub fn new(settings: &crate::cutouts::CutoutSettings) -> Result<Self, reqwest::Error> {
        let packets = PacketReader::new(settings);
        let registry = SchemaRegistry::new(&settings.schema_registry_url, packets.schemas.clone())?;
        Ok(Self { packets, registry })
    }

    /// Reads a body; with `stop`, an unanswering registry is retried until
    /// it answers or `stop` fires, without it the first failure is returned.
    pub async fn read(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        stop: Option<&CancellationToken>,
    ) -> Result<Alerts, ReadError> {
        loop {
            let error = match AlertCutouts::parse(content_type, body, &self.packets) {
                Ok(alerts) => return Ok(alerts),
                Err(e) => e,
            };
            let (Some(id), Some(registry)) = (AlertCutouts::unknown_schema(&error), &self.registry)
            else {
                return Err(ReadError::Invalid(error));
            };
            let fetched = match stop {
                Some(stop) => registry.fetch_retrying(id, stop).await,
                None => Some(registry.fetch(id).await),
            };
            match fetched {
                None => return Err(ReadError::Stopped),
                Some(Ok(())) => continue,
                Some(Err(RegistryError::NotFound(_))) => return Err(ReadError::Invalid(error)),
                Some(Err(RegistryError::Schema(e))) => {
                    return Err(ReadError::Invalid(InvalidAlert::Packet(e)))
                }
                Some(Err(e)) => return Err(ReadError::Unavailable(e)),
            }
        }
    }
}
