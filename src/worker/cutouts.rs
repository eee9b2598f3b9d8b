//! `alert.cutouts` deliveries, start to ack: read the message (JSON, a ZTF
//! or Rubin packet, or a container file of many alerts; the registry asked
//! for unknown schema ids, held while it does not answer), draw each cutout
//! on a blocking thread, write the stamps and their files in a shared
//! batch, publish one `thumbnail.stored` per object, then ack. A message
//! that can never succeed (unreadable, or no cutout drawable) is
//! dead-lettered with its reason; a partly bad one stores the good alerts
//! and stamps and counts the bad by reason.

use std::sync::Arc;

use futures_util::future::join_all;
use lapin::message::Delivery;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handler::{dead_letter, publish_stored};
use super::writer::StampBatch;
use super::{WriteError, Writer};
use crate::bus::events::cutouts::{draw_cutouts, join};
use crate::bus::events::InvalidAlert;
use crate::bus::{AckToken, Session};
use crate::cutouts::{Colormap, CutoutSettings};
use crate::files::FileStore;
use crate::remote::schema_registry::{AlertReader, ReadError};
use crate::store::cutouts::{Stamp, StampJob};
use crate::surveys::ThumbnailType;

/// Alerts per transaction at most.
const MAX_BATCH: usize = 256;
/// Transactions in flight at once.
const WRITERS: usize = 2;

/// What became of an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOutcome {
    /// Stamps stored; these rows, and the cutouts that failed (by reason).
    Done {
        rows: Vec<crate::store::StoredRow>,
        failed: Vec<&'static str>,
    },
    /// Can never succeed: dead-letter (short reason, message).
    Invalid(&'static str, String),
    /// Shutting down before commit: leave unacked for redelivery.
    Stopped,
}

pub struct CutoutsWorker {
    settings: Arc<CutoutSettings>,
    /// Packets and their schemas (the registry asked for unknown ids).
    reader: AlertReader,
    writer: Writer<StampBatch>,
    /// Alerts drawn at once: one per core. Without it every delivery of the
    /// prefetch window took a blocking thread of its own (hundreds of
    /// threads, each with its stack and allocator caches: 520 MiB resident
    /// in the benchmark) for no more throughput.
    drawing: Arc<tokio::sync::Semaphore>,
    /// Fires at shutdown: a delivery waiting for the registry is left.
    abort: CancellationToken,
}

impl CutoutsWorker {
    pub fn new(
        settings: CutoutSettings,
        db: DatabaseConnection,
        files: FileStore,
        abort: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            reader: AlertReader::new(&settings)?,
            settings: Arc::new(settings),
            writer: Writer::spawn(StampBatch { db, files }, MAX_BATCH, WRITERS, abort.clone()),
            drawing: Arc::new(tokio::sync::Semaphore::new(cores)),
            abort,
        })
    }

    /// Handles one message body: one alert, or every alert of a container
    /// file; no broker involved (tests call this).
    pub async fn handle(&self, content_type: Option<&str>, body: &[u8]) -> AlertOutcome {
        let read = match self
            .reader
            .read(content_type, body, Some(&self.abort))
            .await
        {
            Ok(a) => a,
            Err(ReadError::Invalid(e)) => return AlertOutcome::Invalid(e.reason(), e.to_string()),
            Err(ReadError::Stopped | ReadError::Unavailable(_)) => return AlertOutcome::Stopped,
        };
        if let Some(first) = read.alerts.first() {
            tracing::Span::current().record("obj_id", first.obj_id.as_str());
        }
        let single = read.alerts.len() == 1 && read.failed.is_empty();
        let mut failed: Vec<&'static str> = read.failed.iter().map(|e| e.reason()).collect();
        let mut invalid: Vec<InvalidAlert> = read.failed;
        let settings = self.settings.clone();
        let Ok(slot) = self.drawing.clone().acquire_owned().await else {
            return AlertOutcome::Stopped;
        };
        let alerts = read.alerts;
        let drawn = match tokio::task::spawn_blocking(move || {
            let drawn: Vec<_> = alerts
                .into_iter()
                .map(|a| {
                    let drawn = draw_cutouts(&a.survey, a.cutouts, &settings);
                    (a.obj_id, a.survey, a.position, a.is_roid, drawn)
                })
                .collect();
            drop(slot);
            drawn
        })
        .await
        {
            Ok(d) => d,
            Err(e) => return AlertOutcome::Invalid("draw", format!("drawing failed: {e}")),
        };
        let gray = self.settings.colormap == Colormap::Gray;
        let mut jobs = Vec::with_capacity(drawn.len());
        for (obj_id, survey, position, is_roid, drawn) in drawn {
            failed.extend(drawn.failed.iter().map(|(_, e)| e.reason()));
            if let Some(e) = drawn.none_drawn() {
                invalid.push(e);
                continue;
            }
            jobs.push(StampJob {
                obj_id,
                survey,
                position,
                is_roid,
                stamps: drawn
                    .drawn
                    .into_iter()
                    .filter_map(|(kind, png, fits)| {
                        let ttype: ThumbnailType = kind.ttype().parse().ok()?;
                        Some(Stamp {
                            ttype,
                            png: Arc::new(png),
                            is_grayscale: gray,
                            fits: fits.map(Arc::new),
                        })
                    })
                    .collect(),
            });
        }
        if jobs.is_empty() {
            for reason in &failed {
                count_failed(reason);
            }
            return match invalid.len() {
                1 => AlertOutcome::Invalid(invalid[0].reason(), invalid[0].to_string()),
                n => {
                    let e = InvalidAlert::NoneRead(n, join(&invalid));
                    AlertOutcome::Invalid(e.reason(), e.to_string())
                }
            };
        }
        let written = join_all(jobs.into_iter().map(|job| self.writer.write(job))).await;
        let mut rows = Vec::new();
        for w in written {
            match w {
                Ok(w) if w.no_obj && single => {
                    return AlertOutcome::Invalid(
                        "unknown_obj",
                        "the object does not exist and the message gives no ra and dec".into(),
                    )
                }
                Ok(w) if w.no_obj => failed.push("unknown_obj"),
                Ok(w) => rows.extend(w.stored),
                Err(WriteError::Permanent(reason)) => {
                    return AlertOutcome::Invalid("database", reason)
                }
                Err(WriteError::Stopped) => return AlertOutcome::Stopped,
            }
        }
        AlertOutcome::Done { rows, failed }
    }

    /// The AMQP side: handle, publish, dead-letter, ack. Dropping `ack`
    /// unused leaves the delivery for redelivery.
    pub async fn handle_delivery(&self, delivery: Delivery, ack: AckToken, session: &Session) {
        let span = tracing::info_span!(
            "alert",
            obj_id = tracing::field::Empty,
            tag = delivery.delivery_tag
        );
        async {
            let content_type = delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str().to_owned());
            match self.handle(content_type.as_deref(), &delivery.data).await {
                AlertOutcome::Done { rows, failed } => {
                    // Every stamp of the alert is rewritten and returned,
                    // so a redelivery announces the same rows again.
                    if let Err(e) = publish_stored(session, &rows).await {
                        tracing::warn!(error = %e, "publishing thumbnail.stored failed; leaving the message for redelivery");
                        return;
                    }
                    ack.ack();
                    for reason in &failed {
                        count_failed(reason);
                    }
                    if !failed.is_empty() {
                        tracing::info!(failed = %failed.join(","), stored = rows.len(), "some cutouts could not be drawn");
                    }
                    metrics::counter!("thumbnails_cutouts_alerts_total", "outcome" => "done")
                        .increment(1);
                    metrics::counter!("thumbnails_cutouts_stamps_total").increment(rows.len() as u64);
                }
                AlertOutcome::Invalid(reason, message) => {
                    tracing::warn!(%reason, %message, "dead-lettering an alert");
                    let header = format!("{reason}: {message}");
                    if let Err(e) = dead_letter(session, &delivery, ack, &header).await {
                        tracing::warn!(error = %e, "dead-lettering failed; leaving the message for redelivery");
                        return;
                    }
                    metrics::counter!("thumbnails_cutouts_alerts_total", "outcome" => "dead_lettered", "reason" => reason)
                        .increment(1);
                }
                AlertOutcome::Stopped => {
                    tracing::debug!("stopped before commit; the broker will redeliver");
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn count_failed(reason: &'static str) {
    metrics::counter!("thumbnails_cutouts_failed_total", "reason" => reason).increment(1);
}
