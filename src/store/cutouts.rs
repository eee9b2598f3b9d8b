//! Alert stamps drawn from cutouts, many alerts per transaction: the
//! `objs` row when the alert says where the object is (never overwritten),
//! the `new`/`ref`/`sub` rows of its survey (replaced in place), and their
//! files, placed before the commit and put back if it fails.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use super::writes::INSERT_OBJS_ANNOUNCED;
use super::{waves, StoreError, StoredRow};
use crate::bus::ORIGIN_UPLOAD;
use crate::files::{FileStore, Placed, RelPath, Staged};
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
    /// `(type, PNG bytes, is_grayscale)`, one per stamp drawn.
    pub stamps: Vec<(ThumbnailType, Arc<Vec<u8>>, bool)>,
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
    RETURNING id, obj_id, type::text, public_url, file_uri, origin, survey";

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
    let key = |&(j, s): &(usize, usize)| (jobs[j].obj_id.as_str(), jobs[j].stamps[s].0);
    let mut placed_at: HashSet<(usize, usize)> = HashSet::new();
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
                    pick(&|j, s| jobs[j].stamps[s].0.as_str().to_owned()).into(),
                    pick(&|j, s| staged[j][s].0.target().to_string_lossy().into_owned()).into(),
                    pick(&|j, s| staged[j][s].1.clone()).into(),
                    pick(&|j, _| jobs[j].survey.clone()).into(),
                    wave.iter()
                        .map(|&i| jobs[rows[i].0].stamps[rows[i].1].2)
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
            let row = StoredRow::from_query(&row)?;
            if let Some(&(j, s)) = owner.get(&(row.obj_id.as_str(), row.ttype)) {
                placed_at.insert((j, s));
                out[j].stored.push(row);
            }
        }
    }
    // Files into place in job order (a later alert of the same object wins).
    let mut placed: Vec<Placed> = Vec::new();
    let mut failure = None;
    for (j, job_files) in staged.into_iter().enumerate() {
        for (s, (file, _)) in job_files.into_iter().enumerate() {
            if !placed_at.contains(&(j, s)) {
                continue; // no object: dropping the staged file removes it
            }
            match file.place() {
                Ok(p) => placed.push(p),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let committed = match failure {
        Some(e) => Err(StoreError::File(e)),
        None => txn.commit().await.map_err(StoreError::from),
    };
    if let Err(e) = committed {
        for p in placed.into_iter().rev() {
            p.undo();
        }
        return Err(e);
    }
    for p in placed {
        p.keep();
    }
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
    let now = Utc::now().naive_utc();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT_OBJS_ANNOUNCED,
        [
            objs.iter().map(|o| o.id.clone()).collect::<Vec<_>>().into(),
            objs.iter().map(|o| o.ra).collect::<Vec<_>>().into(),
            objs.iter().map(|o| o.dec).collect::<Vec<_>>().into(),
            objs.iter().map(|o| o.is_roid).collect::<Vec<_>>().into(),
            objs.iter()
                .map(|_| uuid::Uuid::new_v4().to_string())
                .collect::<Vec<_>>()
                .into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A staged stamp file and the public URL of where it goes.
type StagedStamp = (Staged, String);

/// Stages every stamp of `jobs` (per job, in stamp order) with one syncfs
/// for all of them, off the async threads.
async fn stage_all(
    files: &FileStore,
    jobs: &[StampJob],
) -> Result<Vec<Vec<StagedStamp>>, StoreError> {
    let counts: Vec<usize> = jobs.iter().map(|j| j.stamps.len()).collect();
    let all: Vec<(RelPath, Arc<Vec<u8>>)> = jobs
        .iter()
        .flat_map(|job| {
            job.stamps.iter().map(|(ttype, png, _)| {
                let rel = RelPath::stamp(&job.obj_id, *ttype, Some(&job.survey), files.depth());
                (rel, png.clone())
            })
        })
        .collect();
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        let bytes: Vec<(RelPath, &[u8])> = all
            .iter()
            .map(|(rel, png)| (rel.clone(), png.as_slice()))
            .collect();
        let staged = files.stage_many_blocking(&bytes)?;
        let mut stamps = staged
            .into_iter()
            .zip(all.iter().map(|(rel, _)| rel.public_url()));
        Ok(counts
            .iter()
            .map(|&n| stamps.by_ref().take(n).collect())
            .collect())
    })
    .await
    .map_err(|e| StoreError::File(crate::files::FileError::Join(e.to_string())))?
    .map_err(StoreError::File)
}
