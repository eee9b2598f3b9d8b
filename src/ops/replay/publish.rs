//! The replay core: page through objects, build events, publish with
//! confirms at a bounded rate.

use std::time::Duration;

use chrono::NaiveDateTime;
use sea_orm::sqlx::{self, PgPool};
use sea_orm::DatabaseConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::events::{Archival, ObjCreated};
use crate::bus::{Publisher, ROUTING_OBJ_CREATED};
use crate::ops::{begin, pg_pool, with_retries, OpsError, Progress};
use crate::surveys::{ThumbnailType, CURRENTLY_UNAVAILABLE};

/// Events in flight (published, confirm awaited) at once.
const MAX_IN_FLIGHT: usize = 1000;

/// Which objects to replay. No ids and `missing = false` means every object.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub missing: bool,
    pub obj_ids: Vec<String>,
    pub created_after: Option<NaiveDateTime>,
    pub created_before: Option<NaiveDateTime>,
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub selection: Selection,
    /// Types to ask for; `None` = all three archival types.
    pub types: Option<Vec<ThumbnailType>>,
    pub replace: bool,
    /// Events per second at most.
    pub rate: Option<f64>,
    pub dry_run: bool,
    pub batch_size: usize,
    pub progress: bool,
    /// Cancelled: stop after the events in flight are confirmed.
    pub stop: CancellationToken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Objects read.
    pub scanned: u64,
    /// Events published (or, in a dry run, that would be).
    pub published: u64,
    /// Selected objects without a valid position (NULL or out of range).
    pub skipped: u64,
    /// `--obj-id` values with no matching object.
    pub not_found: u64,
    /// Stopped early by `stop`.
    pub interrupted: bool,
}

impl ReplaySummary {
    pub fn line(&self, dry_run: bool) -> String {
        if dry_run {
            format!("replay: would publish {} events (dry run)", self.published)
        } else {
            format!("replay: published {} events", self.published)
        }
    }
}

/// Objects, in id order: id, ra, dec, is_roid, then whether sdss, ls and a
/// real ps1 answer exist (a NULL-URL ps1 row counts as present: only the
/// failed lookup's placeholder, `$4`, is retried). Each check is a probe of
/// the archival unique index `(obj_id, type) WHERE survey IS NULL` (an
/// alert stamp with a survey label is not the archival thumbnail), made only when `$5` (`--missing`, the
/// one selection that reads them) is true. `$1` selects the objects
/// (`$key`), `$2`/`$3` bound `created_at`.
macro_rules! objects_with_rows {
    ($key:literal, $tail:literal) => {
        concat!(
            "SELECT o.id, o.ra, o.dec, COALESCE(o.is_roid, false),
        $5::bool AND EXISTS (
            SELECT 1 FROM thumbnails t WHERE t.obj_id = o.id AND t.type = 'sdss'
                AND t.survey IS NULL),
        $5::bool AND EXISTS (
            SELECT 1 FROM thumbnails t WHERE t.obj_id = o.id AND t.type = 'ls'
                AND t.survey IS NULL),
        $5::bool AND EXISTS (
            SELECT 1 FROM thumbnails t WHERE t.obj_id = o.id AND t.type = 'ps1'
                AND t.survey IS NULL
                AND t.public_url IS DISTINCT FROM $4)
    FROM objs o
    WHERE ",
            $key,
            "
      AND ($2::timestamp IS NULL OR o.created_at >= $2)
      AND ($3::timestamp IS NULL OR o.created_at < $3)
    ORDER BY o.id",
            $tail
        )
    };
}

/// A keyset page: the objects after id `$1`, at most `$6`.
const PAGE: &str = objects_with_rows!("o.id > $1", " LIMIT $6");

/// The objects of a list of ids.
const BY_ID: &str = objects_with_rows!("o.id = ANY($1)", "");

const COUNT: &str = "SELECT count(*) FROM objs o
    WHERE ($1::timestamp IS NULL OR o.created_at >= $1)
      AND ($2::timestamp IS NULL OR o.created_at < $2)";

type Row = (String, Option<f64>, Option<f64>, bool, bool, bool, bool);

/// Publishes `obj.created` for the selected objects. `publisher` may be
/// `None` only in a dry run.
pub async fn replay(
    db: &DatabaseConnection,
    publisher: Option<&Publisher>,
    opts: &ReplayOptions,
) -> Result<ReplaySummary, OpsError> {
    let pool = pg_pool(db)?;
    let publisher = match (publisher, opts.dry_run) {
        (_, true) => None,
        (Some(p), false) => Some(p),
        (None, false) => return Err(OpsError::Invalid("replay needs a publisher".into())),
    };
    let sel = &opts.selection;
    let batch = opts.batch_size.max(1);
    let mut ids = sel.obj_ids.clone();
    ids.sort();
    ids.dedup();
    let total = if !ids.is_empty() {
        ids.len() as u64
    } else if opts.progress {
        let (n,): (i64,) = sqlx::query_as(COUNT)
            .bind(sel.created_after)
            .bind(sel.created_before)
            .fetch_one(pool)
            .await?;
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    };
    let mut progress = Progress::new("replay", "objects", total, opts.progress);
    let pacer = Pacer::new(opts.rate);
    let mut summary = ReplaySummary::default();
    let mut pages = Pages::new(pool, sel, ids, batch);
    'pages: while let Some(rows) = pages.next().await? {
        summary.scanned += rows.len() as u64;
        let mut bodies = Vec::new();
        for row in &rows {
            match event_for(row, opts) {
                Some(Ok(body)) => bodies.push(body),
                Some(Err(reason)) => {
                    summary.skipped += 1;
                    progress.suspend(|| tracing::debug!(obj_id = %row.0, %reason, "skipped"));
                }
                None => {}
            }
        }
        for chunk in bodies.chunks(pacer.chunk(MAX_IN_FLIGHT)) {
            if let Some(publisher) = publisher {
                if !pacer.wait(summary.published, &opts.stop).await {
                    summary.interrupted = true;
                    break 'pages;
                }
                publisher
                    .publish_many(ROUTING_OBJ_CREATED, chunk, true)
                    .await
                    .map_err(|source| OpsError::PublishFailed {
                        published: summary.published,
                        source,
                    })?;
            }
            summary.published += chunk.len() as u64;
        }
        progress.inc(rows.len() as u64);
        progress.set_message(format!("{} events", summary.published));
        if opts.stop.is_cancelled() {
            summary.interrupted = true;
            break;
        }
    }
    summary.not_found = pages.not_found;
    progress.finish();
    Ok(summary)
}

/// The event for one object: `None` if it is not selected, `Err` (skipped)
/// if its position is missing or invalid.
fn event_for(row: &Row, opts: &ReplayOptions) -> Option<Result<Vec<u8>, String>> {
    let (id, ra, dec, is_roid, has_sdss, has_ls, has_ps1) = row;
    let mut types = opts
        .types
        .clone()
        .unwrap_or_else(|| ThumbnailType::ARCHIVAL.to_vec());
    if opts.selection.missing {
        if *is_roid {
            return None;
        }
        types = Archival {
            sdss: *has_sdss,
            ls: *has_ls,
            ps1: *has_ps1,
        }
        .lacking(&types);
        if types.is_empty() {
            return None;
        }
    }
    let (Some(ra), Some(dec)) = (ra, dec) else {
        return Some(Err("ra or dec is NULL".into()));
    };
    // The worker would dead-letter what does not validate: skip it here.
    Some(
        ObjCreated::existing_body(id, *ra, *dec, *is_roid, Some(&types), opts.replace, None)
            .map_err(|e| e.to_string()),
    )
}

/// Keyset pages over objs, or chunks of an id list.
struct Pages<'a> {
    pool: &'a PgPool,
    sel: &'a Selection,
    ids: Vec<String>,
    batch: usize,
    last: Option<String>,
    done: bool,
    not_found: u64,
}

impl<'a> Pages<'a> {
    fn new(pool: &'a PgPool, sel: &'a Selection, ids: Vec<String>, batch: usize) -> Self {
        Self {
            pool,
            sel,
            ids,
            batch,
            last: None,
            done: false,
            not_found: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<Row>>, OpsError> {
        if self.done {
            return Ok(None);
        }
        if !self.sel.obj_ids.is_empty() {
            let take = self.batch.min(self.ids.len());
            let chunk: Vec<String> = self.ids.drain(..take).collect();
            self.done = self.ids.is_empty();
            let rows: Vec<Row> = with_retries(never, || async {
                let mut tx = begin(self.pool).await?;
                let rows = sqlx::query_as(BY_ID)
                    .bind(&chunk)
                    .bind(self.sel.created_after)
                    .bind(self.sel.created_before)
                    .bind(CURRENTLY_UNAVAILABLE)
                    .bind(self.sel.missing)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(rows)
            })
            .await?;
            self.not_found += (chunk.len() - rows.len()) as u64;
            return Ok(Some(rows));
        }
        let rows: Vec<Row> = with_retries(never, || async {
            let mut tx = begin(self.pool).await?;
            let rows = sqlx::query_as(PAGE)
                .bind(self.last.as_deref().unwrap_or(""))
                .bind(self.sel.created_after)
                .bind(self.sel.created_before)
                .bind(CURRENTLY_UNAVAILABLE)
                .bind(self.sel.missing)
                .bind(i64::try_from(self.batch).unwrap_or(1000))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        })
        .await?;
        self.done = rows.len() < self.batch;
        match rows.last() {
            Some(r) => self.last = Some(r.0.clone()),
            None => return Ok(None),
        }
        Ok(Some(rows))
    }
}

/// Page reads retry only what the shared policy calls retryable.
fn never(_: &sqlx::Error) -> bool {
    false
}

/// Spaces publishes so that event `n` goes out no earlier than `n / rate`
/// seconds after the start (sleep accounting, no drift).
struct Pacer {
    rate: Option<f64>,
    start: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Self {
            rate,
            start: Instant::now(),
        }
    }

    /// Events per publish burst: about a tenth of a second's worth when paced.
    fn chunk(&self, max: usize) -> usize {
        match self.rate {
            Some(r) => ((r / 10.0).ceil() as usize).clamp(1, max),
            None => max,
        }
    }

    /// Waits until event `sent` is due; `false` if stopped meanwhile.
    async fn wait(&self, sent: u64, stop: &CancellationToken) -> bool {
        let Some(rate) = self.rate else {
            return !stop.is_cancelled();
        };
        let due = self.start + Duration::from_secs_f64(sent as f64 / rate);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => !stop.is_cancelled(),
            _ = stop.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(missing: bool, types: Option<Vec<ThumbnailType>>) -> ReplayOptions {
        ReplayOptions {
            selection: Selection {
                missing,
                ..Default::default()
            },
            types,
            replace: false,
            rate: None,
            dry_run: true,
            batch_size: 10,
            progress: false,
            stop: CancellationToken::new(),
        }
    }

    fn row(ra: Option<f64>, roid: bool, has: [bool; 3]) -> Row {
        ("o".into(), ra, Some(1.0), roid, has[0], has[1], has[2])
    }

    fn types_of(body: &[u8]) -> Vec<ThumbnailType> {
        ObjCreated::parse(body).expect("valid event").types
    }

    #[test]
    fn missing_events_ask_for_the_missing_types_only() {
        let o = opts(true, None);
        let ev = event_for(&row(Some(2.0), false, [true, false, false]), &o);
        let body = ev.expect("selected").expect("valid");
        assert_eq!(types_of(&body), vec![ThumbnailType::Ls, ThumbnailType::Ps1]);
        assert!(event_for(&row(Some(2.0), false, [true, true, true]), &o).is_none());
        assert!(
            event_for(&row(Some(2.0), true, [false, false, false]), &o).is_none(),
            "roids are never missing"
        );
        let only_ps1 = opts(true, Some(vec![ThumbnailType::Ps1]));
        assert!(event_for(&row(Some(2.0), false, [false, false, true]), &only_ps1).is_none());
    }

    #[test]
    fn all_sends_every_object_and_skips_bad_positions() {
        let o = opts(false, None);
        let body = event_for(&row(Some(2.0), false, [true, true, true]), &o)
            .expect("selected")
            .expect("valid");
        assert_eq!(types_of(&body), ThumbnailType::ARCHIVAL.to_vec());
        assert_eq!(
            body,
            br#"{"id":"o","ra":2.0,"dec":1.0,"existing":true}"#.to_vec()
        );
        assert!(matches!(
            event_for(&row(None, false, [false; 3]), &o),
            Some(Err(_))
        ));
        assert!(matches!(
            event_for(&row(Some(360.0), false, [false; 3]), &o),
            Some(Err(_))
        ));
    }

    #[test]
    fn pacing_bursts_are_a_tenth_of_a_second() {
        assert_eq!(Pacer::new(None).chunk(1000), 1000);
        assert_eq!(Pacer::new(Some(200.0)).chunk(1000), 20);
        assert_eq!(Pacer::new(Some(0.5)).chunk(1000), 1);
        assert_eq!(Pacer::new(Some(1e9)).chunk(1000), 1000);
    }
}
