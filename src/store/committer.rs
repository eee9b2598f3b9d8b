//! Group commit for uploads: the uploads waiting at the same moment share
//! one transaction (one statement per wave, one commit), the way the
//! worker's writer batches objects. Each upload still gets its own answer.
//!
//! A batch whose statement fails (an object deleted meanwhile, say) is
//! retried one upload at a time, so one bad upload never fails the others.
//! Files are placed after the statements and before the commit; if a
//! placement or the commit fails, every file of the batch is put back and
//! every upload of the batch is answered with the error. An alert stamp's
//! kept FITS (`Upload::fits`) goes in and comes back with its PNG; a stamp
//! stored without one clears the FITS an earlier write kept beside it.

use std::sync::Arc;

use chrono::NaiveDateTime;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::outage::{component, Outage};
use super::outbox::Pending;
use super::retry::is_connection;
use super::waves;
use crate::bus::{StoredThumbnail, ThumbnailStored, ORIGIN_UPLOAD, ROUTING_THUMBNAIL_STORED};
use crate::files::{apply_all, fits_url_beside, FileError, FitsWrite, Staged, Write};
use crate::surveys::ThumbnailType;

/// Most uploads in one transaction.
const MAX_BATCH: usize = 256;
/// Uploads waiting for the committer before senders wait too.
const QUEUE: usize = 1024;

/// A checked upload with its staged file.
#[derive(Debug)]
pub struct Upload {
    pub obj_id: String,
    pub ttype: ThumbnailType,
    pub public_url: String,
    pub survey: Option<String>,
    pub is_grayscale: bool,
    pub staged: Staged,
    /// An alert stamp's original cutout, gzipped and staged beside the PNG
    /// (`FileStore::stage_fits_blocking`, with `cutouts.keep_fits`). `None`
    /// keeps none, and a stamp (with a survey) then clears a stale one.
    pub fits: Option<Staged>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("no such object")]
    NoSuchObj,
    #[error("database error")]
    Db(#[source] Arc<DbErr>),
    #[error("file error")]
    File(#[source] Arc<FileError>),
    #[error("the upload committer stopped")]
    Stopped,
}

impl CommitError {
    /// The database could not be reached: the upload may pass if sent again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CommitError::Db(e) if is_connection(e))
    }
}

/// What a committed upload gives back: its row id and the event to publish.
pub type Committed = (i32, Pending);
type Reply = oneshot::Sender<Result<Committed, CommitError>>;

/// The handle uploads go through; the committing task ends when the last
/// handle is dropped, after answering what it holds.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<(Upload, Reply)>,
}

impl Committer {
    pub fn spawn(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Self { tx }
    }

    /// Writes the row and its outbox event and places the file; returns
    /// once committed.
    pub async fn commit(&self, upload: Upload) -> Result<Committed, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((upload, reply))
            .await
            .map_err(|_| CommitError::Stopped)?;
        answer.await.unwrap_or(Err(CommitError::Stopped))
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<(Upload, Reply)>) {
    let outage = Outage::new(component::UPLOADS);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (uploads, replies): (Vec<Upload>, Vec<Reply>) = batch.drain(..).unzip();
        let results = commit_all(&db, uploads).await;
        watch(&outage, &results);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Tells `outage` what a batch met: any upload committed means the
/// database answers; a connection failure means it does not. (Uploads are
/// not retried here: the client gets 503 and sends again.)
fn watch(outage: &Outage, results: &[Result<Committed, CommitError>]) {
    if results.iter().any(Result::is_ok) {
        outage.recovered();
    } else if let Some(e) = results.iter().find_map(|r| match r {
        Err(e) if e.is_unavailable() => Some(e),
        _ => None,
    }) {
        outage.failed(&crate::telemetry::cause_chain(e));
    }
}

/// Commits `uploads` together, or one at a time if their shared statement
/// fails; one result per upload, in order.
pub async fn commit_all(
    db: &DatabaseConnection,
    uploads: Vec<Upload>,
) -> Vec<Result<Committed, CommitError>> {
    let n = uploads.len();
    match commit_batch(db, uploads).await {
        Ok(committed) => verdicts(committed).collect(),
        Err(Failed::Statement(_, uploads)) if n > 1 => {
            let mut out = Vec::with_capacity(n);
            for upload in uploads {
                match commit_batch(db, vec![upload]).await {
                    Ok(committed) => out.extend(verdicts(committed)),
                    // The database went away meanwhile: the rest fail
                    // alike, at once, rather than each after a timeout.
                    Err(failed @ Failed::Unavailable(_)) => {
                        out.extend((0..n - out.len()).map(|_| Err(failed.error(false))));
                        break;
                    }
                    Err(failed) => out.push(Err(failed.error(true))),
                }
            }
            out
        }
        Err(failed) => (0..n).map(|_| Err(failed.error(n == 1))).collect(),
    }
}

/// A committed batch's answers: an upload without a row had no object.
fn verdicts(
    committed: Vec<Option<Committed>>,
) -> impl Iterator<Item = Result<Committed, CommitError>> {
    committed
        .into_iter()
        .map(|c| c.ok_or(CommitError::NoSuchObj))
}

/// Why a batch was not committed.
enum Failed {
    /// A statement failed before any file moved: the uploads come back.
    Statement(Arc<DbErr>, Vec<Upload>),
    /// The database cannot be reached (no retry one at a time: each would
    /// wait for a connection in turn).
    Unavailable(Arc<DbErr>),
    Place(Arc<FileError>),
    Commit(Arc<DbErr>),
}

impl Failed {
    fn error(&self, single: bool) -> CommitError {
        match self {
            // A lone upload's missing object shows as a foreign-key error
            // when it was deleted between the join and the insert.
            Failed::Statement(e, _) if single && is_fk_violation(e) => CommitError::NoSuchObj,
            Failed::Statement(e, _) | Failed::Unavailable(e) | Failed::Commit(e) => {
                CommitError::Db(e.clone())
            }
            Failed::Place(e) => CommitError::File(e.clone()),
        }
    }
}

fn is_fk_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// One wave's rows (the `unnest` columns, in order), then `now` and the
/// routing key. A row whose object does not exist is skipped (no answer
/// line); the others answer `(ord, thumbnail id, outbox id)`. One statement
/// holds either archival uploads (no survey) or alert stamps (a survey), as
/// each names the unique index it may conflict on (src/store/stamps.rs).
macro_rules! upsert_uploads {
    ($conflict:literal) => {
        concat!(
            "WITH i AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bool[], $7::bool[], $8::text[], $9::text[])
      WITH ORDINALITY AS x(obj_id, type, file_uri, public_url, survey, has_survey,
                           is_grayscale, head, tail, ord)
  ),
  t AS (
    INSERT INTO thumbnails (created_at, modified, type, file_uri, public_url, origin,
                            survey, is_grayscale, obj_id)
    SELECT $10, $10, i.type::thumbnail_types, i.file_uri, i.public_url, 'upload',
           CASE WHEN i.has_survey THEN i.survey END, i.is_grayscale, i.obj_id
    FROM i JOIN objs ON objs.id = i.obj_id
    ORDER BY i.ord
    ON CONFLICT ",
            $conflict,
            " DO UPDATE
      SET modified = EXCLUDED.modified, file_uri = EXCLUDED.file_uri,
          public_url = EXCLUDED.public_url, origin = EXCLUDED.origin,
          survey = EXCLUDED.survey, is_grayscale = EXCLUDED.is_grayscale
    RETURNING id, obj_id, type::text AS type, survey, (xmax = 0) AS inserted
  ),
  e AS MATERIALIZED (
    SELECT i.ord, t.id, t.inserted, i.head, i.tail, nextval('thumbnail_outbox_id_seq') AS eid
    FROM t JOIN i ON i.obj_id = t.obj_id AND i.type = t.type
      AND t.survey IS NOT DISTINCT FROM CASE WHEN i.has_survey THEN i.survey END
  ),
  o AS (
    INSERT INTO thumbnail_outbox (id, routing_key, body, created_at)
    SELECT eid, $11, head || id || tail, now() AT TIME ZONE 'UTC' FROM e
  )
  SELECT ord, id, eid, inserted FROM e"
        )
    };
}

/// Uploads without a survey: the archival row of `(obj_id, type)`.
const UPSERT_UPLOADS: &str = upsert_uploads!("(obj_id, type) WHERE survey IS NULL");
/// Alert stamps: one row per `(obj_id, type, survey)`.
const UPSERT_STAMPS: &str = upsert_uploads!("(obj_id, type, survey) WHERE survey IS NOT NULL");

/// A `thumbnail.stored` body before and after the row's id.
type Body = (String, String);

/// Commits `uploads` in one transaction. Per upload: `Some` when stored,
/// `None` when its object does not exist.
async fn commit_batch(
    db: &DatabaseConnection,
    uploads: Vec<Upload>,
) -> Result<Vec<Option<Committed>>, Failed> {
    let now = chrono::Utc::now().naive_utc();
    let mut rows: Vec<Option<(i32, i64, Body)>> = vec![None; uploads.len()];
    // Uploads whose row this transaction inserted: nothing of theirs was
    // stored before (see `files::Write::into_new`).
    let mut fresh = vec![false; uploads.len()];
    // No connection: every upload would fail alike, one at a time too.
    let txn = db
        .begin()
        .await
        .map_err(|e| Failed::Unavailable(Arc::new(e)))?;
    for wave in waves(&uploads, |u| {
        (u.obj_id.as_str(), u.ttype, u.survey.as_deref())
    }) {
        for stamps in [false, true] {
            let part: Vec<usize> = wave
                .iter()
                .copied()
                .filter(|&i| uploads[i].survey.is_some() == stamps)
                .collect();
            if part.is_empty() {
                continue;
            }
            let sql = if stamps {
                UPSERT_STAMPS
            } else {
                UPSERT_UPLOADS
            };
            match upsert_wave(&txn, &uploads, &part, now, sql).await {
                Ok(got) => {
                    for (i, row, inserted) in got {
                        rows[i] = Some(row);
                        fresh[i] = inserted;
                    }
                }
                Err(e) if is_connection(&e) => return Err(Failed::Unavailable(Arc::new(e))),
                Err(e) => return Err(Failed::Statement(Arc::new(e), uploads)),
            }
        }
    }
    // Files go into place (a later upload of the same file wins).
    let writes: Vec<Write> = uploads
        .into_iter()
        .zip(rows.iter().zip(&fresh))
        // No object: dropping the staged files removes them.
        .filter(|(_, (row, _))| row.is_some())
        .map(|(upload, (_, &fresh))| {
            let write = Write {
                fits: FitsWrite::for_stamp(&upload.staged, upload.fits),
                png: upload.staged,
            };
            if fresh {
                write.into_new()
            } else {
                write
            }
        })
        .collect();
    let placed = apply_all(writes)
        .await
        .map_err(|e| Failed::Place(Arc::new(e)))?;
    if let Err(e) = txn.commit().await {
        placed.undo().await;
        return Err(Failed::Commit(Arc::new(e)));
    }
    placed.keep().await;
    Ok(rows
        .into_iter()
        .map(|row| {
            row.map(|(id, event, (head, tail))| {
                (
                    id,
                    Pending {
                        id: event,
                        routing_key: ROUTING_THUMBNAIL_STORED,
                        body: format!("{head}{id}{tail}"),
                    },
                )
            })
        })
        .collect())
}

/// The order rows are locked in: by their unique key.
fn lock_key(u: &Upload) -> (&str, &str, Option<&str>) {
    (&u.obj_id, u.ttype.as_str(), u.survey.as_deref())
}

/// Runs `sql` ([`UPSERT_UPLOADS`] or [`UPSERT_STAMPS`]) for the uploads at
/// `wave`'s indexes; returns, per stored upload, its index, row id, outbox
/// id and event body around the id, and whether the row is new.
async fn upsert_wave(
    txn: &DatabaseTransaction,
    uploads: &[Upload],
    wave: &[usize],
    now: NaiveDateTime,
    sql: &str,
) -> Result<Vec<(usize, (i32, i64, Body), bool)>, DbErr> {
    // Sorted, so that concurrent transactions lock rows in the same order.
    let mut wave = wave.to_vec();
    wave.sort_by(|&a, &b| lock_key(&uploads[a]).cmp(&lock_key(&uploads[b])));
    let file_uris: Vec<String> = wave.iter().map(|&i| uploads[i].staged.file_uri()).collect();
    let bodies: Vec<Body> = wave
        .iter()
        .zip(&file_uris)
        .map(|(&i, file_uri)| {
            let u = &uploads[i];
            let fits_url = u.fits.as_ref().and_then(|_| fits_url_beside(&u.public_url));
            ThumbnailStored::split_at_id(
                &u.obj_id,
                StoredThumbnail::new(
                    0,
                    u.ttype.as_str(),
                    Some(&u.public_url),
                    Some(file_uri),
                    Some(ORIGIN_UPLOAD),
                    u.survey.as_deref(),
                )
                .with_fits_url(fits_url.as_deref()),
            )
        })
        .collect();
    let col = |f: &dyn Fn(&Upload) -> String| -> Vec<String> {
        wave.iter().map(|&i| f(&uploads[i])).collect()
    };
    let values = vec![
        col(&|u| u.obj_id.clone()).into(),
        col(&|u| u.ttype.as_str().to_string()).into(),
        file_uris.into(),
        col(&|u| u.public_url.clone()).into(),
        col(&|u| u.survey.clone().unwrap_or_default()).into(),
        wave.iter()
            .map(|&i| uploads[i].survey.is_some())
            .collect::<Vec<_>>()
            .into(),
        wave.iter()
            .map(|&i| uploads[i].is_grayscale)
            .collect::<Vec<_>>()
            .into(),
        bodies
            .iter()
            .map(|b| b.0.clone())
            .collect::<Vec<_>>()
            .into(),
        bodies
            .iter()
            .map(|b| b.1.clone())
            .collect::<Vec<_>>()
            .into(),
        now.into(),
        ROUTING_THUMBNAIL_STORED.into(),
    ];
    let got = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    got.iter()
        .map(|row| {
            let ord: i64 = row.try_get_by_index(0)?;
            let pos = usize::try_from(ord - 1)
                .ok()
                .filter(|&p| p < wave.len())
                .ok_or_else(|| DbErr::Custom(format!("unexpected ordinal {ord}")))?;
            Ok((
                wave[pos],
                (
                    row.try_get_by_index(1)?,
                    row.try_get_by_index(2)?,
                    bodies[pos].clone(),
                ),
                row.try_get_by_index(3)?,
            ))
        })
        .collect()
}
