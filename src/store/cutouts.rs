//! Alert stamps drawn from cutouts, many alerts per transaction: the
//! `objs` row when the alert says where the object is (never overwritten),
//! the `new`/`ref`/`sub` rows of its survey (replaced in place), and their
//! files, placed before the commit and put back if it fails. With
//! `cutouts.keep_fits` each stamp's original cutout goes beside its PNG
//! (gzipped) the same way; a stamp written without one clears the FITS a
//! previous write kept (see `files::FitsWrite`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use super::writes::{insert_objs_statement, INSERT_OBJS_ANNOUNCED};
use super::{waves, StoreError, StoredRow};
use crate::bus::ORIGIN_UPLOAD;
use crate::files::{apply_all, gzip_fits, FileError, FileStore, FitsWrite, RelPath, Staged, Write};
use crate::surveys::ThumbnailType;

/// One alert's drawn stamps.
#[derive(Debug, Clone)]
pub struct StampJob {
    pub obj_id: String,
    /// Upper-case survey label (`ZTF`, `LSST`).
    pub survey: String,
    /// Where the object is, if it may not exist yet: then it is created.
    pub position: Option<(f64, f64)>,
    /// Whether an object created here is a moving one (no archival thumbnails).
    pub is_roid: bool,
    /// One per stamp drawn.
    pub stamps: Vec<Stamp>,
}

/// One drawn stamp of an alert.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub ttype: ThumbnailType,
    pub png: Arc<Vec<u8>>,
    pub is_grayscale: bool,
    /// The original cutout (FITS or gzipped FITS) to keep beside the PNG
    /// (`cutouts.keep_fits`); `None` keeps none and clears a stale one.
    pub fits: Option<Arc<Vec<u8>>>,
}

/// What one job's write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StampsWritten {
    /// The rows stored (all of the job's stamps), or none if `no_obj`.
    pub stored: Vec<StoredRow>,
    /// The object does not exist and the job gave no position.
    pub no_obj: bool,
}

const UPSERT: &str = "INSERT INTO thumbnails (created_at, modified, type, file_uri, public_url,
        origin, survey, is_grayscale, obj_id)
    SELECT $7, $7, x.type::thumbnail_types, x.file_uri, x.public_url, $8, x.survey, x.gray, x.obj_id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[])
      AS x(obj_id, type, file_uri, public_url, survey, gray)
    JOIN objs ON objs.id = x.obj_id
    ON CONFLICT (obj_id, type, survey) WHERE survey IS NOT NULL DO UPDATE
      SET modified = EXCLUDED.modified, file_uri = EXCLUDED.file_uri,
          public_url = EXCLUDED.public_url, origin = EXCLUDED.origin,
          is_grayscale = EXCLUDED.is_grayscale
    RETURNING id, obj_id, type::text, public_url, file_uri, origin, survey, (xmax = 0) AS inserted";

/// Writes the jobs' stamps in one transaction. Safe to call again with the
/// same jobs after a failure (files are staged anew each time).
pub async fn write_stamps(
    db: &DatabaseConnection,
    files: &FileStore,
    jobs: &[StampJob],
) -> Result<Vec<StampsWritten>, StoreError> {
    // Stage every file first, off the async threads.
    let staged = stage_all(files, jobs).await?;
    let now = Utc::now().naive_utc();
    let mut out = vec![StampsWritten::default(); jobs.len()];
    let txn = db.begin().await?;
    let new_objs: Vec<NewObj> = jobs
        .iter()
        .filter_map(|j| {
            j.position.map(|(ra, dec)| NewObj {
                id: j.obj_id.clone(),
                ra,
                dec,
                is_roid: j.is_roid,
            })
        })
        .collect();
    create_objs(&txn, &new_objs).await?;
    // Flatten to (job, stamp) rows; a DO UPDATE may touch a row once per
    // statement, so repeated objects go in later waves.
    let rows: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.stamps.len()).map(move |s| (j, s)))
        .collect();
    let key = |&(j, s): &(usize, usize)| (jobs[j].obj_id.as_str(), jobs[j].stamps[s].ttype);
    let mut placed_at: HashSet<(usize, usize)> = HashSet::new();
    // Stamps whose row this transaction inserted: nothing of theirs was
    // stored before, so nothing need be read back for an undo, nor a stale
    // FITS cleared (a bucket saves two requests a stamp).
    let mut fresh: HashSet<(usize, usize)> = HashSet::new();
    for mut wave in waves(&rows, key) {
        wave.sort_by(|a, b| key(&rows[*a]).cmp(&key(&rows[*b])));
        let pick = |f: &dyn Fn(usize, usize) -> String| -> Vec<String> {
            wave.iter()
                .map(|&i| {
                    let (j, s) = rows[i];
                    f(j, s)
                })
                .collect()
        };
        let stored = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                UPSERT,
                [
                    pick(&|j, _| jobs[j].obj_id.clone()).into(),
                    pick(&|j, s| jobs[j].stamps[s].ttype.as_str().to_owned()).into(),
                    pick(&|j, s| staged[j][s].png.file_uri()).into(),
                    pick(&|j, s| staged[j][s].public_url.clone()).into(),
                    pick(&|j, _| jobs[j].survey.clone()).into(),
                    wave.iter()
                        .map(|&i| jobs[rows[i].0].stamps[rows[i].1].is_grayscale)
                        .collect::<Vec<_>>()
                        .into(),
                    now.into(),
                    ORIGIN_UPLOAD.into(),
                ],
            ))
            .await?;
        // A wave holds each (object, type) once: the row's owner.
        let owner: HashMap<(&str, ThumbnailType), (usize, usize)> =
            wave.iter().map(|&i| (key(&rows[i]), rows[i])).collect();
        for row in stored {
            let inserted: bool = row.try_get_by_index(7).unwrap_or(false);
            let mut row = StoredRow::from_query(&row)?;
            if let Some(&(j, s)) = owner.get(&(row.obj_id.as_str(), row.ttype)) {
                placed_at.insert((j, s));
                if inserted {
                    fresh.insert((j, s));
                }
                row.fits_url = staged[j][s].fits_url.clone();
                out[j].stored.push(row);
            }
        }
    }
    // Files into place (a later alert of the same object wins).
    let writes: Vec<Write> = staged
        .into_iter()
        .enumerate()
        .flat_map(|(j, job_files)| {
            job_files
                .into_iter()
                .enumerate()
                .map(move |(s, f)| (j, s, f))
        })
        // No object: dropping the staged files removes them.
        .filter(|(j, s, _)| placed_at.contains(&(*j, *s)))
        .map(|(j, s, f)| {
            let write = Write {
                png: f.png,
                fits: f.fits,
            };
            if fresh.contains(&(j, s)) {
                write.into_new()
            } else {
                write
            }
        })
        .collect();
    let placed = apply_all(writes).await.map_err(StoreError::File)?;
    if let Err(e) = txn.commit().await {
        placed.undo().await;
        return Err(e.into());
    }
    placed.keep().await;
    for (job, written) in jobs.iter().zip(out.iter_mut()) {
        written.no_obj = written.stored.is_empty() && !job.stamps.is_empty();
    }
    Ok(out)
}

/// An object an alert announces: created if absent, never overwritten.
#[derive(Debug, Clone, PartialEq)]
pub struct NewObj {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub is_roid: bool,
}

/// Creates the objects that do not exist yet (filling every column, as a
/// SkyPortal database needs); the feed announces them like any insert.
pub async fn create_objs(db: &impl ConnectionTrait, objs: &[NewObj]) -> Result<(), StoreError> {
    if objs.is_empty() {
        return Ok(());
    }
    let rows = objs.iter().map(|o| (o.id.as_str(), o.ra, o.dec, o.is_roid));
    db.execute_raw(insert_objs_statement(
        INSERT_OBJS_ANNOUNCED,
        rows,
        Utc::now().naive_utc(),
    ))
    .await?;
    Ok(())
}

/// A stamp's files, staged: its PNG and what becomes of its kept FITS.
struct StagedStamp {
    png: Staged,
    public_url: String,
    /// `None` only for a PNG that is no alert stamp's (never here).
    fits: Option<FitsWrite>,
    /// The kept FITS's public URL, when one is put.
    fits_url: Option<String>,
}

/// One file to stage: where, and its bytes (a PNG, or a cutout to gzip).
type ToStage = (RelPath, Arc<Vec<u8>>);

/// Stages every stamp of `jobs` (per job, in stamp order), kept FITS
/// gzipped, synced together, off the async threads.
async fn stage_all(
    files: &FileStore,
    jobs: &[StampJob],
) -> Result<Vec<Vec<StagedStamp>>, StoreError> {
    let counts: Vec<usize> = jobs.iter().map(|j| j.stamps.len()).collect();
    let all: Vec<(ToStage, Option<ToStage>)> = jobs
        .iter()
        .flat_map(|job| {
            job.stamps.iter().map(|stamp| {
                let (obj, survey, depth) = (&job.obj_id, &job.survey, files.depth());
                let rel = RelPath::stamp(obj, stamp.ttype, Some(survey), depth);
                let fits = stamp.fits.as_ref().map(|cutout| {
                    let rel = RelPath::stamp_fits(obj, stamp.ttype, survey, depth);
                    (rel, cutout.clone())
                });
                ((rel, stamp.png.clone()), fits)
            })
        })
        .collect();
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        let gzipped: Vec<Option<std::borrow::Cow<'_, [u8]>>> = all
            .iter()
            .map(|(_, fits)| fits.as_ref().map(|(_, c)| gzip_fits(c)).transpose())
            .collect::<Result<_, _>>()
            .map_err(FileError::Gzip)?;
        let mut bytes: Vec<(RelPath, &[u8])> = Vec::with_capacity(all.len() * 2);
        for (((rel, png), fits), gz) in all.iter().zip(&gzipped) {
            bytes.push((rel.clone(), png.as_slice()));
            if let (Some((fits_rel, _)), Some(gz)) = (fits, gz) {
                bytes.push((fits_rel.clone(), gz));
            }
        }
        let mut staged = files.stage_many_blocking(&bytes)?.into_iter();
        let mut stamps = Vec::with_capacity(all.len());
        for ((rel, _), fits) in &all {
            let png = staged.next().ok_or_else(lost)?;
            let kept = match fits {
                Some(_) => Some(staged.next().ok_or_else(lost)?),
                None => None,
            };
            let fits_url = fits.as_ref().map(|(r, _)| files.public_url(r));
            stamps.push(StagedStamp {
                fits: FitsWrite::for_stamp(&png, kept),
                png,
                public_url: files.public_url(rel),
                fits_url,
            });
        }
        let mut stamps = stamps.into_iter();
        Ok(counts
            .iter()
            .map(|&n| stamps.by_ref().take(n).collect())
            .collect())
    })
    .await
    .map_err(|e| StoreError::File(FileError::Join(e.to_string())))?
    .map_err(StoreError::File)
}

fn lost() -> FileError {
    FileError::Join("a staged file went missing".into())
}
