//! `alert.cutouts` deliveries, start to ack: read the message (JSON or a
//! ZTF Avro packet), draw each cutout on a blocking thread, write the
//! stamps and their files in a shared batch, publish one `thumbnail.stored`
//! for the object, then ack. A message that can never succeed (unreadable,
//! or no cutout drawable) is dead-lettered with its reason; a partly bad
//! one stores the good stamps and counts the bad by reason.

use std::sync::Arc;

use lapin::message::Delivery;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handler::{dead_letter, publish_stored};
use super::writer::StampBatch;
use super::{WriteError, Writer};
use crate::bus::events::cutouts::draw_cutouts;
use crate::bus::events::AlertCutouts;
use crate::bus::{AckToken, Session};
use crate::cutouts::{Colormap, CutoutSettings};
use crate::files::FileStore;
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
    writer: Writer<StampBatch>,
    /// Alerts drawn at once: one per core. Without it every delivery of the
    /// prefetch window took a blocking thread of its own (hundreds of
    /// threads, each with its stack and allocator caches: 520 MiB resident
    /// in the benchmark) for no more throughput.
    drawing: Arc<tokio::sync::Semaphore>,
}

impl CutoutsWorker {
    pub fn new(
        settings: CutoutSettings,
        db: DatabaseConnection,
        files: FileStore,
        abort: CancellationToken,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            settings: Arc::new(settings),
            writer: Writer::spawn(StampBatch { db, files }, MAX_BATCH, WRITERS, abort),
            drawing: Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// Handles one message body; no broker involved (tests call this).
    pub async fn handle(&self, content_type: Option<&str>, body: &[u8]) -> AlertOutcome {
        let alert = match AlertCutouts::parse(content_type, body) {
            Ok(a) => a,
            Err(e) => return AlertOutcome::Invalid(e.reason(), e.to_string()),
        };
        tracing::Span::current().record("obj_id", alert.obj_id.as_str());
        let settings = self.settings.clone();
        let AlertCutouts {
            obj_id,
            survey,
            position,
            cutouts,
        } = alert;
        let label = survey.clone();
        let Ok(slot) = self.drawing.clone().acquire_owned().await else {
            return AlertOutcome::Stopped;
        };
        let drawn = match tokio::task::spawn_blocking(move || {
            let drawn = draw_cutouts(&label, cutouts, &settings);
            drop(slot);
            drawn
        })
        .await
        {
            Ok(d) => d,
            Err(e) => return AlertOutcome::Invalid("draw", format!("drawing failed: {e}")),
        };
        if let Some(e) = drawn.none_drawn() {
            for (_, f) in &drawn.failed {
                count_failed(f.reason());
            }
            return AlertOutcome::Invalid(e.reason(), e.to_string());
        }
        let gray = self.settings.colormap == Colormap::Gray;
        let job = StampJob {
            obj_id,
            survey,
            position,
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
        };
        match self.writer.write(job).await {
            Ok(w) if w.no_obj => AlertOutcome::Invalid(
                "unknown_obj",
                "the object does not exist and the message gives no ra and dec".into(),
            ),
            Ok(w) => AlertOutcome::Done {
                rows: w.stored,
                failed: drawn.failed.iter().map(|(_, e)| e.reason()).collect(),
            },
            Err(WriteError::Permanent(reason)) => AlertOutcome::Invalid("database", reason),
            Err(WriteError::Stopped) => AlertOutcome::Stopped,
        }
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
