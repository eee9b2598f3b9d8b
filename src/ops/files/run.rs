//! The I/O of `thumbnails files`: page the rows that name a file (by id,
//! never OFFSET), then walk `<root>/thumbnails`.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use sea_orm::sqlx::{self, PgPool};
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{
    claimant, classify, may_remove_orphan, plan_claim, plan_row, FileKind, RowFile, RowPlan,
};
use crate::files::FileStore;
use crate::ops::{begin, pg_pool, OpsError, Progress};
use crate::surveys::ThumbnailType;

/// Files looked up in the database at once.
const FILE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct FilesOptions {
    /// Move files and fix rows; without it, only count.
    pub repair: bool,
    /// With `repair`: count what would change, change nothing.
    pub dry_run: bool,
    /// With `repair`: remove our files that no row names, once older than `grace`.
    pub delete_orphans: bool,
    pub grace: Duration,
    pub batch_size: usize,
    pub progress: bool,
    pub stop: CancellationToken,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilesSummary {
    /// Rows that name a file.
    pub rows: u64,
    pub in_place: u64,
    /// Rows whose file is elsewhere under the uploads folder (moved, or to move).
    pub misplaced: u64,
    /// Rows whose file was already at the right place (row repointed, or to repoint).
    pub repointed: u64,
    /// Rows whose file exists nowhere.
    pub missing: u64,
    /// Rows naming a file outside the uploads folder (left alone).
    pub foreign_rows: u64,
    /// Files this service writes, found at the current depth / elsewhere.
    pub files_at_depth: u64,
    pub files_off_depth: u64,
    /// Hidden (in-flight) and foreign files, never touched.
    pub in_flight: u64,
    pub foreign_files: u64,
    /// Our files that no row names; removed; kept because younger than the grace.
    pub orphans: u64,
    pub orphans_removed: u64,
    pub orphans_recent: u64,
    /// Moves or removals that failed (logged with their path).
    pub failed: u64,
    pub interrupted: bool,
}

impl FilesSummary {
    pub fn line(&self, opts: &FilesOptions) -> String {
        let verb = match (opts.repair, opts.dry_run) {
            (false, _) => "audit",
            (true, true) => "repair (dry run)",
            (true, false) => "repair",
        };
        let moved = if opts.repair && !opts.dry_run {
            "moved"
        } else {
            "to move"
        };
        let mut line = format!(
            "files {verb}: {} rows with a file: {} in place, {} {moved}, {} repointed, {} missing, {} outside storage; \
             {} files at depth, {} elsewhere, {} in flight, {} foreign; {} without a row",
            self.rows,
            self.in_place,
            self.misplaced,
            self.repointed,
            self.missing,
            self.foreign_rows,
            self.files_at_depth,
            self.files_off_depth,
            self.in_flight,
            self.foreign_files,
            self.orphans,
        );
        if opts.repair && opts.delete_orphans {
            let removed = if opts.dry_run { "to remove" } else { "removed" };
            line.push_str(&format!(
                " ({} {removed}, {} within the grace period)",
                self.orphans_removed, self.orphans_recent
            ));
        }
        line.push_str(&format!(", {} failed", self.failed));
        line
    }
}

type Row = (i32, String, String, Option<String>, String);

const COUNT: &str =
    "SELECT count(*) FROM thumbnails WHERE file_uri IS NOT NULL AND type IS NOT NULL";
const PAGE: &str = "SELECT id, obj_id, type::text, survey, file_uri FROM thumbnails
    WHERE id > $1 AND file_uri IS NOT NULL AND type IS NOT NULL ORDER BY id LIMIT $2";
/// The page's rows, locked: an upload of the same key waits for our commit,
/// so it never places its file before our move.
const LOCK: &str = "SELECT id, file_uri FROM thumbnails WHERE id = ANY($1) FOR UPDATE";
const REPOINT: &str = "UPDATE thumbnails t SET file_uri = v.uri, public_url = v.url, modified = $4
    FROM unnest($1::int4[], $2::text[], $3::text[]) AS v(id, uri, url) WHERE t.id = v.id";

/// Audits (or repairs) the files of `store` against the rows of `db`.
pub async fn files(
    db: &DatabaseConnection,
    store: &FileStore,
    opts: &FilesOptions,
) -> Result<FilesSummary, OpsError> {
    let pool = pg_pool(db)?;
    let mut summary = FilesSummary::default();
    rows_pass(pool, store, opts, &mut summary).await?;
    if !summary.interrupted {
        files_pass(pool, store, opts, &mut summary).await?;
    }
    Ok(summary)
}

fn is_file(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| m.is_file())
}

async fn rows_pass(
    pool: &PgPool,
    store: &FileStore,
    opts: &FilesOptions,
    summary: &mut FilesSummary,
) -> Result<(), OpsError> {
    let total: i64 = sqlx::query_scalar(COUNT).fetch_one(pool).await?;
    let mut progress = Progress::new("files: rows", "rows", total.max(0) as u64, opts.progress);
    let (root, depth) = (store.root().to_path_buf(), store.depth());
    let mut last = 0;
    loop {
        if opts.stop.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let page: Vec<Row> = sqlx::query_as(PAGE)
            .bind(last)
            .bind(opts.batch_size as i64)
            .fetch_all(pool)
            .await?;
        let Some(&(id, ..)) = page.last() else { break };
        last = id;
        let n = page.len() as u64;
        let rows: Vec<RowFile> = page
            .into_iter()
            .filter_map(|(id, obj_id, ttype, survey, file_uri)| {
                let ttype: ThumbnailType = ttype.parse().ok()?;
                Some(RowFile {
                    id,
                    obj_id,
                    ttype,
                    survey,
                    file_uri,
                })
            })
            .collect();
        let root2 = root.clone();
        let plans = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|r| {
                    let plan = plan_row(&r, &root2, depth, is_file);
                    (r, plan)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| OpsError::Invalid(format!("file task failed: {e}")))?;
        let mut changes = Vec::new();
        for (row, plan) in plans {
            match plan {
                RowPlan::InPlace => summary.in_place += 1,
                RowPlan::Missing => {
                    progress.suspend(|| tracing::warn!(id = row.id, file_uri = %row.file_uri, "the row's file is missing"));
                    summary.missing += 1;
                }
                RowPlan::Foreign => summary.foreign_rows += 1,
                RowPlan::Move { .. } => {
                    summary.misplaced += 1;
                    changes.push((row, plan));
                }
                RowPlan::Repoint { .. } => {
                    summary.repointed += 1;
                    changes.push((row, plan));
                }
            }
        }
        summary.rows += n;
        if opts.repair && !opts.dry_run && !changes.is_empty() {
            summary.failed += apply_page(pool, store, changes, &progress).await?;
        }
        progress.inc(n);
    }
    progress.finish();
    Ok(())
}

/// Moves a page's files and repoints its rows in one transaction; if the
/// commit fails the files go back. Returns the moves that failed (each
/// logged; the others go on).
async fn apply_page(
    pool: &PgPool,
    store: &FileStore,
    changes: Vec<(RowFile, RowPlan)>,
    progress: &Progress,
) -> Result<u64, OpsError> {
    let mut tx = begin(pool).await?;
    let ids: Vec<i32> = changes.iter().map(|(r, _)| r.id).collect();
    let locked: Vec<(i32, Option<String>)> =
        sqlx::query_as(LOCK).bind(&ids).fetch_all(&mut *tx).await?;
    let current: std::collections::HashMap<i32, Option<String>> = locked.into_iter().collect();
    // A row changed since the page was read is left for the next run.
    let changes: Vec<(RowFile, RowPlan)> = changes
        .into_iter()
        .filter(|(r, _)| current.get(&r.id) == Some(&Some(r.file_uri.clone())))
        .collect();
    let uploads = store.uploads_dir();
    let (moved, failed) = tokio::task::spawn_blocking(move || {
        let mut moved: Vec<(i32, PathBuf, PathBuf, String)> = Vec::new();
        let mut failed = Vec::new();
        for (row, plan) in changes {
            match plan {
                RowPlan::Move {
                    from,
                    to,
                    public_url,
                } => {
                    let done = to
                        .parent()
                        .map_or(Ok(()), fs::create_dir_all)
                        .and_then(|()| fs::rename(&from, &to));
                    match done {
                        Ok(()) => moved.push((row.id, from, to, public_url)),
                        Err(e) => failed.push((row.id, from, e)),
                    }
                }
                RowPlan::Repoint { to, public_url } => {
                    moved.push((row.id, to.clone(), to, public_url));
                }
                _ => {}
            }
        }
        (moved, failed)
    })
    .await
    .map_err(|e| OpsError::Invalid(format!("file task failed: {e}")))?;
    for (id, from, e) in &failed {
        progress.suspend(|| tracing::error!(id, path = %from.display(), error = %e, "cannot move the file; row left as it was"));
    }
    let update = sqlx::query(REPOINT)
        .bind(moved.iter().map(|m| m.0).collect::<Vec<_>>())
        .bind(
            moved
                .iter()
                .map(|m| m.2.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
        )
        .bind(moved.iter().map(|m| m.3.clone()).collect::<Vec<_>>())
        .bind(Utc::now().naive_utc())
        .execute(&mut *tx)
        .await;
    let committed = match update {
        Ok(_) => tx.commit().await,
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        for (_, from, to, _) in moved.iter().rev() {
            if from != to {
                if let Err(e) = fs::rename(to, from) {
                    tracing::error!(path = %to.display(), error = %e, "cannot move a file back after a failed commit");
                }
            }
        }
        return Err(e.into());
    }
    for (_, from, to, _) in &moved {
        if from != to {
            remove_empty_dirs(from, &uploads);
        }
    }
    Ok(failed.len() as u64)
}

/// Removes the now empty folders above a moved file, up to `uploads`.
fn remove_empty_dirs(file: &Path, uploads: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == uploads || !d.starts_with(uploads) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

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

async fn files_pass(
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
    let remove = opts.repair && opts.delete_orphans;
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let mut ours = Vec::new();
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
                    if at_depth {
                        summary.files_at_depth += 1;
                    } else {
                        summary.files_off_depth += 1;
                    }
                    ours.push((f, parsed));
                }
            }
        }
        let (owned, mut bereft) = owned_paths(pool, store, &ours).await?;
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
            summary.orphans += 1;
            if !remove {
                continue;
            }
            if !may_remove_orphan(f.age, opts.grace) {
                summary.orphans_recent += 1;
                continue;
            }
            if opts.dry_run {
                summary.orphans_removed += 1;
                continue;
            }
            match remove_orphan(&f) {
                Ok(true) => summary.orphans_removed += 1,
                Ok(false) => summary.orphans_recent += 1,
                Err(e) => {
                    progress.suspend(|| tracing::error!(path = %f.path.display(), error = %e, "cannot remove an orphan file"));
                    summary.failed += 1;
                }
            }
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

/// The paths among `ours` that a row names, and the rows of their objects
/// whose file the rows pass found [`RowPlan::Missing`] (which may claim one
/// of `ours`).
async fn owned_paths(
    pool: &PgPool,
    store: &FileStore,
    ours: &[(Found, crate::files::ParsedName)],
) -> Result<(HashSet<String>, Vec<RowFile>), OpsError> {
    let ids: Vec<String> = ours
        .iter()
        .filter_map(|(_, p)| p.obj_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut owned: HashSet<String> = HashSet::new();
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
        .map(|(f, _)| f.path.to_string_lossy().into_owned())
        .collect();
    if !paths.is_empty() {
        let found: Vec<(String,)> =
            sqlx::query_as("SELECT file_uri FROM thumbnails WHERE file_uri = ANY($1)")
                .bind(&paths)
                .fetch_all(pool)
                .await?;
        owned.extend(found.into_iter().map(|(u,)| u));
    }
    Ok((owned, bereft))
}
