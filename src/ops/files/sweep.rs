//! The files pass of `thumbnails files`: walk `<root>/thumbnails`, match
//! each file of ours to its row, put back what a row claims, count (and
//! with `--delete-orphans` remove) what no row names.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sea_orm::sqlx::{self, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{
    claimant, classify, may_remove_orphan, plan_claim, plan_row, row_key, stamp_key, FileKind,
    RowFile, RowPlan,
};
use super::run::{apply_page, is_file, FilesOptions, FilesSummary, Row};
use crate::files::{png_beside, FileStore, ParsedName};
use crate::ops::{OpsError, Progress};
use crate::surveys::ThumbnailType;

/// Files looked up in the database at once.
const FILE_BATCH: usize = 1000;

/// A file found by the walk: its path, hashed folders, name, age and inode.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    dirs: Vec<String>,
    name: String,
    age: Option<Duration>,
    ino: u64,
}

/// Walks `uploads` on a blocking thread, sending files in batches.
fn walk(uploads: PathBuf, tx: mpsc::Sender<Vec<Found>>, stop: CancellationToken) {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![(uploads, Vec::<String>::new())];
    let mut batch = Vec::with_capacity(FILE_BATCH);
    while let Some((dir, dirs)) = stack.pop() {
        if stop.is_cancelled() {
            return;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            tracing::warn!(dir = %dir.display(), "cannot read the folder; skipped");
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                let mut sub = dirs.clone();
                sub.push(name);
                stack.push((entry.path(), sub));
            } else {
                batch.push(Found {
                    path: entry.path(),
                    dirs: dirs.clone(),
                    name,
                    age: meta
                        .modified()
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok()),
                    ino: if meta.is_file() { meta.ino() } else { 0 },
                });
                if batch.len() == FILE_BATCH
                    && tx
                        .blocking_send(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(FILE_BATCH),
                        ))
                        .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = tx.blocking_send(batch);
}

pub(super) async fn files_pass(
    pool: &PgPool,
    store: &FileStore,
    opts: &FilesOptions,
    summary: &mut FilesSummary,
) -> Result<(), OpsError> {
    let mut progress = Progress::new("files: files", "files", summary.rows, opts.progress);
    let (tx, mut rx) = mpsc::channel(4);
    let uploads = store.uploads_dir();
    let walker = {
        let (uploads, stop) = (uploads.clone(), opts.stop.clone());
        tokio::task::spawn_blocking(move || walk(uploads, tx, stop))
    };
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let (mut ours, mut fits) = (Vec::new(), Vec::new());
        for f in batch {
            // Only regular files: a link is nobody's upload.
            if f.ino == 0 {
                summary.foreign_files += 1;
                continue;
            }
            match classify(&f.dirs, &f.name, store.depth()) {
                FileKind::InFlight => summary.in_flight += 1,
                FileKind::Foreign => summary.foreign_files += 1,
                FileKind::Ours { parsed, at_depth } => {
                    count_ours(summary, at_depth);
                    ours.push((f, parsed));
                }
                FileKind::Fits { parsed, at_depth } => {
                    count_ours(summary, at_depth);
                    summary.fits_files += 1;
                    fits.push((f, parsed));
                }
            }
        }
        let Owned {
            paths: owned,
            stamps,
            mut bereft,
        } = owned_paths(pool, store, &ours, &fits).await?;
        for (f, parsed) in &fits {
            let has_row = match stamp_key(parsed) {
                Some(key) => stamps.contains(&key),
                None => png_beside(&f.path)
                    .is_some_and(|png| owned.contains(png.to_string_lossy().as_ref())),
            };
            if !has_row {
                orphan(f, opts, summary, &progress);
            }
        }
        let mut claimed = Vec::new();
        for (f, parsed) in ours {
            if owned.contains(f.path.to_string_lossy().as_ref()) {
                continue;
            }
            // A row whose file is missing claims it: put back, never removed.
            if let Some(i) = claimant(&parsed, &bereft) {
                let row = bereft.swap_remove(i);
                if let Some(plan) = plan_claim(&row, &f.path, store.root(), store.depth()) {
                    summary.missing = summary.missing.saturating_sub(1);
                    summary.misplaced += 1;
                    claimed.push((row, plan));
                    continue;
                }
            }
            orphan(&f, opts, summary, &progress);
        }
        if opts.repair && !opts.dry_run && !claimed.is_empty() {
            summary.failed += apply_page(pool, store, claimed, &progress).await?;
        }
        progress.inc(n);
    }
    walker
        .await
        .map_err(|e| OpsError::Invalid(format!("file walk failed: {e}")))?;
    if opts.stop.is_cancelled() {
        summary.interrupted = true;
    }
    progress.finish();
    Ok(())
}

fn count_ours(summary: &mut FilesSummary, at_depth: bool) {
    if at_depth {
        summary.files_at_depth += 1;
    } else {
        summary.files_off_depth += 1;
    }
}

/// Counts a file without a row and, with `--delete-orphans`, removes it
/// once past the grace period.
fn orphan(f: &Found, opts: &FilesOptions, summary: &mut FilesSummary, progress: &Progress) {
    summary.orphans += 1;
    if !(opts.repair && opts.delete_orphans) {
        return;
    }
    if !may_remove_orphan(f.age, opts.grace) {
        summary.orphans_recent += 1;
        return;
    }
    if opts.dry_run {
        summary.orphans_removed += 1;
        return;
    }
    match remove_orphan(f) {
        Ok(true) => summary.orphans_removed += 1,
        Ok(false) => summary.orphans_recent += 1,
        Err(e) => {
            progress.suspend(|| tracing::error!(path = %f.path.display(), error = %e, "cannot remove an orphan file"));
            summary.failed += 1;
        }
    }
}

/// Removes an orphan unless it was replaced since the walk saw it (same
/// inode, still past the grace: an upload renames a new file into place).
fn remove_orphan(f: &Found) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.path.symlink_metadata()?;
    if meta.ino() != f.ino {
        return Ok(false);
    }
    fs::remove_file(&f.path)?;
    tracing::info!(path = %f.path.display(), "removed a file without a row");
    Ok(true)
}

/// What the rows of a batch's objects say about its files.
struct Owned {
    /// The paths that a row names.
    paths: HashSet<String>,
    /// The stamps `(obj_id, type, survey)` that have a row (a kept FITS is
    /// theirs).
    stamps: HashSet<(String, ThumbnailType, Option<String>)>,
    /// The rows whose file the rows pass found [`RowPlan::Missing`] (which
    /// may claim one of `ours`).
    bereft: Vec<RowFile>,
}

/// Looks up the rows of the objects that `ours` and `fits` name.
async fn owned_paths(
    pool: &PgPool,
    store: &FileStore,
    ours: &[(Found, ParsedName)],
    fits: &[(Found, ParsedName)],
) -> Result<Owned, OpsError> {
    let ids: Vec<String> = ours
        .iter()
        .chain(fits)
        .filter_map(|(_, p)| p.obj_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut owned: HashSet<String> = HashSet::new();
    let mut stamps = HashSet::new();
    let mut bereft = Vec::new();
    if !ids.is_empty() {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, obj_id, type::text, survey, file_uri FROM thumbnails
             WHERE obj_id = ANY($1) AND file_uri IS NOT NULL AND type IS NOT NULL",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        for (id, obj_id, ttype, survey, file_uri) in rows {
            owned.insert(file_uri.clone());
            let Ok(ttype) = ttype.parse() else { continue };
            let row = RowFile {
                id,
                obj_id,
                ttype,
                survey,
                file_uri,
            };
            stamps.extend(row_key(&row));
            if plan_row(&row, store.root(), store.depth(), is_file) == RowPlan::Missing {
                bereft.push(row);
            }
        }
    }
    // A shortened name does not give its obj_id back: look up by path, all
    // of them in one statement (no index on file_uri: one scan, not one per
    // file; such names need obj_ids over 150 characters).
    let paths: Vec<String> = ours
        .iter()
        .filter(|(_, p)| p.obj_id.is_none())
        .map(|(f, _)| f.path.clone())
        .chain(
            fits.iter()
                .filter(|(_, p)| p.obj_id.is_none())
                .filter_map(|(f, _)| png_beside(&f.path)),
        )
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if !paths.is_empty() {
        let found: Vec<(String,)> =
            sqlx::query_as("SELECT file_uri FROM thumbnails WHERE file_uri = ANY($1)")
                .bind(&paths)
                .fetch_all(pool)
                .await?;
        owned.extend(found.into_iter().map(|(u,)| u));
    }
    Ok(Owned {
        paths: owned,
        stamps,
        bereft,
    })
}
