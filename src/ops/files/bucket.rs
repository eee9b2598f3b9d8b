//! `thumbnails files audit|repair` on a bucket: the same counts and fixes
//! as on a folder, by listing instead of walking and by copy and delete
//! instead of rename.
//!
//! Rows pass: a row's object is in place, at another depth (copied to the
//! current one with its kept FITS, the row repointed, then the old objects
//! deleted), found already at the current depth (row repointed) or
//! missing. Files pass: every listed object under `<prefix>/thumbnails/`
//! is classified by its name; one no row names is an orphan, removed with
//! `--delete-orphans` once older than the grace period, unless a row of
//! the same stamp exists (its file, misplaced: never removed, only
//! counted).

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use futures_util::{stream, StreamExt, TryStreamExt};
use sea_orm::sqlx::{self, PgPool};

use super::plan::{classify, expected, may_remove_orphan, stamp_key, FileKind, RowFile};
use super::run::{row_page, FilesOptions, FilesSummary};
use crate::files::{fits_beside, png_beside, FileError, FileStore, SUBDIR};
use crate::ops::{OpsError, Progress};

/// Objects looked at (and rows looked up) at once.
const BATCH: usize = 1000;
/// Requests in flight at once.
const CONCURRENT: usize = 16;

const REPOINT: &str = "UPDATE thumbnails t SET file_uri = v.uri, public_url = v.url, modified = $5
    FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[]) AS v(id, old, uri, url)
    WHERE t.id = v.id AND t.file_uri = v.old";
const NAMED: &str = "SELECT file_uri FROM thumbnails WHERE file_uri = ANY($1)";
const STAMPS: &str =
    "SELECT obj_id, type::text, survey FROM thumbnails WHERE obj_id = ANY($1) AND type IS NOT NULL";

/// What one row's object needs.
enum Plan {
    InPlace,
    Missing,
    Foreign,
    /// Copy `from` (and its FITS) to `to`, repoint, delete `from`.
    Move {
        from: String,
        to: String,
    },
    /// The object is at `to` already: repoint.
    Repoint {
        to: String,
    },
}

async fn exists(store: &FileStore, path: &str) -> Result<bool, FileError> {
    let bucket = store
        .bucket()
        .ok_or_else(|| FileError::Join("not a bucket".into()))?;
    bucket
        .exists(&bucket.key_of_segments(&path.split('/').collect::<Vec<_>>()))
        .await
}

async fn plan(store: &FileStore, row: &RowFile) -> Result<Plan, FileError> {
    let (Some(current), Some(rel)) = (
        store.layout_path_of(&row.file_uri),
        expected(row, store.depth()),
    ) else {
        return Ok(Plan::Foreign);
    };
    let want = rel.as_url_path();
    let want = want
        .strip_prefix(&format!("{SUBDIR}/"))
        .unwrap_or(&want)
        .to_string();
    Ok(if current == want {
        if exists(store, &current).await? {
            Plan::InPlace
        } else {
            Plan::Missing
        }
    } else if exists(store, &current).await? {
        Plan::Move {
            from: current,
            to: want,
        }
    } else if exists(store, &want).await? {
        Plan::Repoint { to: want }
    } else {
        Plan::Missing
    })
}

pub(super) async fn rows_pass(
    pool: &PgPool,
    store: &FileStore,
    opts: &FilesOptions,
    summary: &mut FilesSummary,
) -> Result<(), OpsError> {
    let mut progress = Progress::new("files: rows", "rows", 0, opts.progress);
    let mut last = 0;
    loop {
        if opts.stop.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let Some((id, n, rows)) = row_page(pool, last, opts.batch_size).await? else {
            break;
        };
        last = id;
        let plans: Vec<(RowFile, Result<Plan, FileError>)> = stream::iter(rows)
            .map(|row| async move {
                let p = plan(store, &row).await;
                (row, p)
            })
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        let mut fixes = Vec::new();
        for (row, plan) in plans {
            match plan {
                Ok(Plan::InPlace) => summary.in_place += 1,
                Ok(Plan::Foreign) => summary.foreign_rows += 1,
                Ok(Plan::Missing) => {
                    tracing::warn!(id = row.id, file_uri = %row.file_uri, "the row's object is missing");
                    summary.missing += 1;
                }
                Ok(p @ Plan::Move { .. }) => {
                    summary.misplaced += 1;
                    fixes.push((row, p));
                }
                Ok(p @ Plan::Repoint { .. }) => {
                    summary.repointed += 1;
                    fixes.push((row, p));
                }
                Err(e) => {
                    tracing::error!(id = row.id, error = %crate::telemetry::cause_chain(&e), "cannot check the row's object");
                    summary.failed += 1;
                }
            }
        }
        summary.rows += n;
        if opts.repair && !opts.dry_run && !fixes.is_empty() {
            summary.failed += apply(pool, store, fixes).await?;
        }
        progress.inc(n);
    }
    progress.finish();
    Ok(())
}

/// A fix applied to the bucket: the row, the object it moved from (none
/// for a repoint), where to, and how the copy went.
type Copied = (RowFile, Option<String>, String, Result<(), FileError>);

/// Copies the page's misplaced objects (with their kept FITS) to the
/// current depth, repoints the rows (only those unchanged meanwhile), then
/// deletes the old objects. Returns the copies that failed.
async fn apply(
    pool: &PgPool,
    store: &FileStore,
    fixes: Vec<(RowFile, Plan)>,
) -> Result<u64, OpsError> {
    let copied: Vec<Copied> = stream::iter(fixes)
        .map(|(row, plan)| async move {
            match plan {
                Plan::Move { from, to } => {
                    let done = copy_with_fits(store, &from, &to).await;
                    (row, Some(from), to, done)
                }
                Plan::Repoint { to } => (row, None, to, Ok(())),
                _ => unreachable!("only moves and repoints are applied"),
            }
        })
        .buffer_unordered(CONCURRENT)
        .collect()
        .await;
    let mut failed = 0;
    let (mut ids, mut olds, mut uris, mut urls, mut sources) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, from, to, done) in copied {
        if let Err(e) = done {
            tracing::error!(id = row.id, error = %crate::telemetry::cause_chain(&e), "cannot copy the object; row left as it was");
            failed += 1;
            continue;
        }
        ids.push(row.id);
        olds.push(row.file_uri);
        uris.push(store.uri_of_layout(&to));
        urls.push(store.public_url_of_layout(&to));
        sources.extend(from);
    }
    sqlx::query(REPOINT)
        .bind(&ids)
        .bind(&olds)
        .bind(&uris)
        .bind(&urls)
        .bind(Utc::now().naive_utc())
        .execute(pool)
        .await?;
    // Committed: the old copies go (a failure leaves an orphan, counted
    // and removable by a later run).
    stream::iter(sources)
        .for_each_concurrent(CONCURRENT, |from| async move {
            for path in std::iter::once(from.clone()).chain(fits_of(&from)) {
                if let Err(e) = delete(store, &path).await {
                    tracing::warn!(path = %path, error = %crate::telemetry::cause_chain(&e), "cannot delete a moved object");
                }
            }
        })
        .await;
    Ok(failed)
}

fn fits_of(path: &str) -> Option<String> {
    fits_beside(std::path::Path::new(path)).map(|p| p.to_string_lossy().into_owned())
}

async fn copy_with_fits(store: &FileStore, from: &str, to: &str) -> Result<(), FileError> {
    let pairs =
        std::iter::once((from.to_string(), to.to_string())).chain(fits_of(from).zip(fits_of(to)));
    for (a, b) in pairs {
        if let Some(bytes) = store.read_layout(&a).await? {
            store.write_layout(&b, bytes).await?;
        }
    }
    Ok(())
}

async fn delete(store: &FileStore, path: &str) -> Result<(), FileError> {
    let bucket = store
        .bucket()
        .ok_or_else(|| FileError::Join("not a bucket".into()))?;
    bucket
        .delete(&bucket.key_of_segments(&path.split('/').collect::<Vec<_>>()))
        .await
}

/// A listed object: `aa/bb/name` and its age.
struct Listed {
    path: String,
    age: Option<Duration>,
}

pub(super) async fn files_pass(
    pool: &PgPool,
    store: &FileStore,
    opts: &FilesOptions,
    summary: &mut FilesSummary,
) -> Result<(), OpsError> {
    let bucket = store
        .bucket()
        .ok_or_else(|| OpsError::Invalid("not a bucket".into()))?
        .clone();
    let mut progress = Progress::new("files: objects", "objects", summary.rows, opts.progress);
    let now = Utc::now();
    let mut listing = bucket
        .list()
        .map_ok(|meta| Listed {
            path: bucket
                .layout_path(&meta.location)
                .unwrap_or_default()
                .to_string(),
            age: (now - meta.last_modified).to_std().ok(),
        })
        .try_chunks(BATCH);
    while let Some(batch) = listing.next().await {
        if opts.stop.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let batch = batch.map_err(|e| OpsError::Invalid(crate::telemetry::cause_chain(&e.1)))?;
        progress.inc(batch.len() as u64);
        let mut ours = Vec::new();
        for f in batch {
            let mut parts: Vec<String> = f.path.split('/').map(str::to_owned).collect();
            let name = parts.pop().unwrap_or_default();
            match classify(&parts, &name, store.depth()) {
                FileKind::InFlight => summary.in_flight += 1,
                FileKind::Foreign => summary.foreign_files += 1,
                FileKind::Ours { parsed, at_depth } => {
                    count(summary, at_depth);
                    ours.push((f, parsed, false));
                }
                FileKind::Fits { parsed, at_depth } => {
                    count(summary, at_depth);
                    summary.fits_files += 1;
                    ours.push((f, parsed, true));
                }
            }
        }
        // The URIs rows name (a FITS is named through its PNG's).
        let uris: Vec<String> = ours
            .iter()
            .map(|(f, _, is_fits)| {
                let png = if *is_fits {
                    png_beside(std::path::Path::new(&f.path))
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    f.path.clone()
                };
                store.uri_of_layout(&png)
            })
            .collect();
        let named: HashSet<String> = sqlx::query_scalar(NAMED)
            .bind(&uris)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
        let obj_ids: Vec<String> = ours
            .iter()
            .filter_map(|(_, p, _)| p.obj_id.clone())
            .collect();
        let stamps: HashSet<(String, String, Option<String>)> = sqlx::query_as(STAMPS)
            .bind(&obj_ids)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(o, t, s): (String, String, Option<String>)| {
                let s = crate::surveys::normalise_survey(s.as_deref())
                    .ok()
                    .flatten();
                (o, t, s)
            })
            .collect();
        for ((f, parsed, _), uri) in ours.into_iter().zip(&uris) {
            if named.contains(uri) {
                continue;
            }
            summary.orphans += 1;
            let claimed = stamp_key(&parsed)
                .is_some_and(|(o, t, s)| stamps.contains(&(o, t.as_str().to_string(), s)));
            if claimed {
                tracing::warn!(path = %f.path, "an object no row names, of a stamp that has a row: kept");
                continue;
            }
            if !(opts.repair && opts.delete_orphans) {
                continue;
            }
            if !may_remove_orphan(f.age, opts.grace) {
                summary.orphans_recent += 1;
                continue;
            }
            if !opts.dry_run {
                if let Err(e) = delete(store, &f.path).await {
                    tracing::error!(path = %f.path, error = %crate::telemetry::cause_chain(&e), "cannot delete an orphan");
                    summary.failed += 1;
                    continue;
                }
            }
            summary.orphans_removed += 1;
        }
    }
    progress.finish();
    Ok(())
}

fn count(summary: &mut FilesSummary, at_depth: bool) {
    if at_depth {
        summary.files_at_depth += 1;
    } else {
        summary.files_off_depth += 1;
    }
}
