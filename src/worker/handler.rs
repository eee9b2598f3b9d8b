//! One delivery, start to ack.

use futures_util::future::try_join_all;
use lapin::message::Delivery;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use std::time::Duration;

use super::writer::ArchivalBatch;
use super::{Ps1Client, Ps1Retries, WriteError, Writer, MAX_BATCH, WRITERS};
use crate::bus::ObjCreated;
use crate::bus::{
    publisher::Outgoing, AckToken, Session, ROUTING_OBJ_CREATED, ROUTING_THUMBNAIL_STORED,
};
use crate::config::Config;
use crate::store::entities::thumbnail;
use crate::store::{ObjRow, StoredRow, SurveyRow, WriteJob};
use crate::surveys::{Templates, ThumbnailType, CURRENTLY_UNAVAILABLE};

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Rows committed; these were new or changed.
    Done(Vec<StoredRow>),
    /// Can never succeed: dead-letter with this reason.
    Invalid(String),
    /// A database event (`existing`) whose object was deleted meanwhile:
    /// nothing written; acked and counted.
    Gone,
    /// Shutting down before commit: leave unacked for redelivery.
    Stopped,
}

pub struct Worker {
    db: DatabaseConnection,
    templates: Templates,
    ps1: Ps1Client,
    retries: Ps1Retries,
    writer: Writer<ArchivalBatch>,
}

impl Worker {
    pub fn new(
        config: &Config,
        db: DatabaseConnection,
        abort: CancellationToken,
    ) -> Result<Self, super::WorkerError> {
        let s = &config.surveys;
        let templates = Templates::new(&s.sdss.template, &s.ls.template)
            .map_err(|e| super::WorkerError::Surveys(e.to_string()))?;
        let ps1 = Ps1Client::new(
            &s.ps1.lookup_url,
            Duration::from_secs_f64(s.ps1.timeout_s),
            s.ps1.max_concurrent,
        )
        .map_err(|e| super::WorkerError::Surveys(e.to_string()))?;
        let retries = Ps1Retries::new(
            Duration::from_secs_f64(s.ps1.retry_first_s),
            Duration::from_secs_f64(s.ps1.retry_max_s),
        );
        let writer = Writer::spawn(ArchivalBatch(db.clone()), MAX_BATCH, WRITERS, abort);
        Ok(Self {
            db,
            templates,
            ps1,
            retries,
            writer,
        })
    }

    /// The schedule of failed PS1 lookups to try again ([`Ps1Retries::run`]
    /// publishes them).
    pub fn ps1_retries(&self) -> Ps1Retries {
        self.retries.clone()
    }

    /// Processes one `obj.created` body; no broker involved (tests call this).
    pub async fn handle(&self, body: &[u8]) -> Outcome {
        self.handle_routed(ROUTING_OBJ_CREATED, body).await
    }

    /// Processes one event body by its routing key: `obj.updated` (same
    /// body) rewrites the object's survey rows, as `replace` does.
    pub async fn handle_routed(&self, routing_key: &str, body: &[u8]) -> Outcome {
        let event = match ObjCreated::parse_routed(routing_key, body) {
            Ok(e) => e,
            Err(e) => return Outcome::Invalid(e.to_string()),
        };
        tracing::Span::current().record("obj_id", event.id.as_str());
        match self.process(&event).await {
            Ok(Some(rows)) => Outcome::Done(rows),
            Ok(None) => Outcome::Gone,
            Err(WriteError::Permanent(reason)) => Outcome::Invalid(reason),
            Err(WriteError::Stopped) => Outcome::Stopped,
        }
    }

    /// The rows stored, or `None` for an `existing` object that is gone.
    async fn process(&self, ev: &ObjCreated) -> Result<Option<Vec<StoredRow>>, WriteError> {
        let wants = |t| !ev.is_roid && ev.types.contains(&t);
        let mut rows: Vec<SurveyRow> = [ThumbnailType::Sdss, ThumbnailType::Ls]
            .into_iter()
            .filter(|t| wants(*t))
            .filter_map(|t| self.templates.url(t, ev.ra, ev.dec).map(|url| (t, url)))
            .map(|(ttype, public_url)| SurveyRow {
                ttype,
                public_url,
                replace: ev.replace,
            })
            .collect();
        let ps1_wanted = wants(ThumbnailType::Ps1);
        // Without a lookup, ps1 is known at once and rides in the same batch.
        if ps1_wanted && !self.ps1.enabled() {
            rows.push(self.ps1_row(CURRENTLY_UNAVAILABLE.into(), ev.replace));
        }
        let ps1_lookup = ps1_wanted && self.ps1.enabled();
        let job = |rows, probe_ps1| WriteJob {
            obj: ObjRow {
                id: ev.id.clone(),
                ra: ev.ra,
                dec: ev.dec,
                is_roid: ev.is_roid,
                existing: ev.existing,
            },
            rows,
            probe_ps1,
            seq: ev.seq,
        };
        // The lookup starts at once, beside the sdss/ls write, so the slow
        // part overlaps the batch; it is dropped (and so aborted) if the
        // write fails or the probe says a real ps1 URL is already stored.
        let lookup = ps1_lookup.then(|| {
            let ps1 = self.ps1.clone();
            let (ra, dec) = (ev.ra, ev.dec);
            AbortOnDropHandle::new(tokio::spawn(
                async move { ps1.lookup(ra, dec).await }.in_current_span(),
            ))
        });
        let first = self
            .writer
            .write(job(rows, ps1_lookup && !ev.replace))
            .await?;
        if first.gone {
            // Nothing to retry for an object that is no more.
            self.retries.settled(&ev.id);
            return Ok(None);
        }
        if first.stale {
            // A newer position was applied already: this one is history
            // (its own lookup, if it failed, was rescheduled by that event).
            metrics::counter!("thumbnails_worker_stale_writes_total").increment(1);
            return Ok(Some(Vec::new()));
        }
        let mut stored = first.stored;
        let Some(lookup) = lookup else {
            return Ok(Some(stored));
        };
        // A stored real PS1 URL (or outside-survey answer) is kept unless the
        // event says `replace`; a failed lookup's placeholder is retried.
        let needed = ev.replace
            || first
                .ps1_url
                .as_deref()
                .is_none_or(|url| url == CURRENTLY_UNAVAILABLE);
        if !needed {
            return Ok(Some(stored));
        }
        let url = lookup
            .await
            .map(|outcome| outcome.into_url())
            .unwrap_or_else(|_| CURRENTLY_UNAVAILABLE.to_owned());
        let failed = url == CURRENTLY_UNAVAILABLE;
        let second = self
            .writer
            .write(job(vec![self.ps1_row(url, ev.replace)], false))
            .await?;
        if second.gone {
            // Deleted during the lookup: its first rows went with it.
            self.retries.settled(&ev.id);
            return Ok(None);
        }
        if second.stale {
            // The object moved during the lookup: its URL is the old place's.
            metrics::counter!("thumbnails_worker_stale_writes_total").increment(1);
            return Ok(Some(stored));
        }
        if failed {
            self.retries.failed(&ev.id, ev.ra, ev.dec, ev.seq);
        } else {
            self.retries.settled(&ev.id);
        }
        stored.extend(second.stored);
        Ok(Some(stored))
    }

    fn ps1_row(&self, public_url: String, replace: bool) -> SurveyRow {
        SurveyRow {
            ttype: ThumbnailType::Ps1,
            public_url,
            replace,
        }
    }

    async fn stored_rows(
        &self,
        obj_id: &str,
        types: &[ThumbnailType],
    ) -> Result<Vec<StoredRow>, sea_orm::DbErr> {
        let types: Vec<thumbnail::DbType> = types.iter().map(|t| (*t).into()).collect();
        Ok(thumbnail::Entity::find()
            .filter(thumbnail::Column::ObjId.eq(obj_id))
            .filter(thumbnail::Column::Ttype.is_in(types))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(StoredRow::from_model)
            .collect())
    }

    /// The AMQP side: handle, publish, dead-letter, ack.
    /// Dropping `ack` unused leaves the delivery for redelivery.
    pub async fn handle_delivery(&self, delivery: Delivery, ack: AckToken, session: &Session) {
        let span = tracing::info_span!(
            "delivery",
            obj_id = tracing::field::Empty,
            tag = delivery.delivery_tag
        );
        async {
            match self
                .handle_routed(delivery.routing_key.as_str(), &delivery.data)
                .await
            {
                Outcome::Done(mut rows) => {
                    if delivery.redelivered {
                        // The first attempt may have committed without
                        // publishing: announce every row of the event again.
                        if let Ok(ev) = ObjCreated::parse(&delivery.data) {
                            match self.stored_rows(&ev.id, &ev.types).await {
                                Ok(all) => rows = all,
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot re-read rows; leaving the message for redelivery");
                                    return;
                                }
                            }
                        }
                    }
                    if let Err(e) = publish_stored(session, &rows).await {
                        tracing::warn!(error = %e, "publishing thumbnail.stored failed; leaving the message for redelivery");
                        return;
                    }
                    ack.ack();
                    metrics::counter!("thumbnails_worker_events_total", "outcome" => "done").increment(1);
                    metrics::counter!("thumbnails_worker_rows_written_total").increment(rows.len() as u64);
                    tracing::debug!(rows = rows.len(), "done");
                }
                Outcome::Invalid(reason) => {
                    tracing::warn!(%reason, "dead-lettering");
                    if let Err(e) = dead_letter(session, &delivery, ack, &reason).await {
                        tracing::warn!(error = %e, "dead-lettering failed; leaving the message for redelivery");
                        return;
                    }
                    metrics::counter!("thumbnails_worker_events_total", "outcome" => "dead_lettered").increment(1);
                }
                Outcome::Gone => {
                    tracing::debug!("the object was deleted; nothing written");
                    ack.ack();
                    metrics::counter!("thumbnails_worker_events_total", "outcome" => "object_gone").increment(1);
                }
                Outcome::Stopped => {
                    tracing::debug!("stopped before commit; the broker will redeliver");
                }
            }
        }
        .instrument(span)
        .await
    }
}

pub(super) async fn publish_stored(
    session: &Session,
    rows: &[StoredRow],
) -> Result<(), crate::bus::BusError> {
    // One message per object; not mandatory: nobody listening for
    // thumbnail.stored is not an error.
    try_join_all(
        StoredRow::stored_events(rows)
            .into_iter()
            .map(|body| async move {
                session
                    .publisher
                    .publish_json(ROUTING_THUMBNAIL_STORED, &body, false)
                    .await
            }),
    )
    .await?;
    Ok(())
}

/// Publishes the delivery's dead-letter copy (with its reason) and, once
/// confirmed, acks the delivery on its own at once: a few copies are in
/// flight per session, so a crash dead-letters again at most those few.
/// On error the delivery is left for redelivery.
pub(super) async fn dead_letter(
    session: &Session,
    delivery: &Delivery,
    ack: AckToken,
    reason: &str,
) -> Result<(), crate::bus::BusError> {
    let _slot = session.dead_letters.acquire().await;
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        "x-thumbnails-error".into(),
        crate::bus::publisher::header(reason),
    );
    let exchange = session.topology.dead_exchange();
    let routing_key = session.topology.dead_queue();
    session
        .publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: &delivery.data,
            headers,
            mandatory: true,
        })
        .await?;
    ack.ack_now();
    session.acker.flush().await;
    Ok(())
}
