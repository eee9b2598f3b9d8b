//! The I/O of `thumbnails files`: page the rows that name a file (by id,
//! never OFFSET) and move what is misplaced, then walk `<root>/thumbnails`
//! (`sweep`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use sea_orm::sqlx::{self, PgPool};
use tokio_util::sync::CancellationToken;

use super::fits::{move_along, move_back, FitsMove};
use super::plan::{plan_row, RowFile, RowPlan};
use crate::files::FileStore;
use crate::ops::{begin, OpsError, Progress};
use crate::surveys::ThumbnailType;

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
    /// Of those, alert stamps' kept FITS (`cutouts.keep_fits`).
    pub fits_files: u64,
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
        if self.fits_files > 0 {
            line.push_str(&format!(" ({} of the files kept FITS)", self.fits_files));
        }
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

pub(super) type Row = (i32, String, String, Option<String>, String);

const COUNT: &str =
    "SELECT count(*) FROM thumbnails WHERE file_uri IS NOT NULL AND type IS NOT NULL";
const PAGE: &str = "SELECT id, obj_id, type::text, survey, file_uri FROM thumbnails
    WHERE id > $1 AND file_uri IS NOT NULL AND type IS NOT NULL ORDER BY id LIMIT $2";
/// The page's rows, locked: an upload of the same key waits for our commit,
/// so it never places its file before our move.
const LOCK: &str = "SELECT id, file_uri FROM thumbnails WHERE id = ANY($1) FOR UPDATE";
const REPOINT: &str = "UPDATE thumbnails t SET file_uri = v.uri, public_url = v.url, modified = $4
    FROM unnest($1::int4[], $2::text[], $3::text[]) AS v(id, uri, url) WHERE t.id = v.id";

/// The page of rows naming a file after id `after`: the last id, how many
/// rows were read, and those of a known type; `None` past the last page.
pub(super) async fn row_page(
    pool: &PgPool,
    after: i32,
    batch_size: usize,
) -> Result<Option<(i32, u64, Vec<RowFile>)>, OpsError> {
    let page: Vec<Row> = sqlx::query_as(PAGE)
        .bind(after)
        .bind(batch_size as i64)
        .fetch_all(pool)
        .await?;
    let Some(&(last, ..)) = page.last() else {
        return Ok(None);
    };
    let n = page.len() as u64;
    let rows = page
        .into_iter()
        .filter_map(|(id, obj_id, ttype, survey, file_uri)| {
            Some(RowFile {
                id,
                obj_id,
                ttype: ttype.parse::<ThumbnailType>().ok()?,
                survey,
                file_uri,
            })
        })
        .collect();
    Ok(Some((last, n, rows)))
}

pub(super) fn is_file(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| m.is_file())
}

pub(super) async fn rows_pass(
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
        let Some((id, n, rows)) = row_page(pool, last, opts.batch_size).await? else {
            break;
        };
        last = id;
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
pub(super) async fn apply_page(
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
        let mut moved: Vec<Moved> = Vec::new();
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
                    // The PNG's kept FITS goes along: both, or neither.
                    let fits = done.and_then(|()| {
                        move_along(&from, &to, true).inspect_err(|_| {
                            if let Err(e) = fs::rename(&to, &from) {
                                tracing::error!(path = %to.display(), error = %e, "cannot move a file back after its FITS failed to move");
                            }
                        })
                    });
                    match fits {
                        Ok(fits) => moved.push((row.id, from, to, public_url, fits)),
                        Err(e) => failed.push((row.id, from, e)),
                    }
                }
                RowPlan::Repoint { to, public_url } => {
                    // A repair stopped after the PNG's move: its FITS may
                    // still sit beside the old path.
                    let fits = move_along(Path::new(&row.file_uri), &to, false)
                        .unwrap_or_else(|e| {
                            tracing::warn!(id = row.id, error = %e, "cannot move a kept FITS beside its file");
                            None
                        });
                    moved.push((row.id, to.clone(), to, public_url, fits));
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
    // Under storage.public_base_url when set (the plan has the /static/ form).
    let mut moved = moved;
    for m in &mut moved {
        if let Some(path) = store.layout_path_of(&m.2.to_string_lossy()) {
            m.3 = store.public_url_of_layout(&path);
        }
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
        for (_, from, to, _, fits) in moved.iter().rev() {
            if let Some(f) = fits {
                move_back(f);
            }
            if from != to {
                if let Err(e) = fs::rename(to, from) {
                    tracing::error!(path = %to.display(), error = %e, "cannot move a file back after a failed commit");
                }
            }
        }
        return Err(e.into());
    }
    for (_, from, to, _, _) in &moved {
        if from != to {
            remove_empty_dirs(from, &uploads);
        }
    }
    Ok(failed.len() as u64)
}

/// A row's file moved (or found moved): id, from, to, public URL, and its
/// kept FITS moved along.
type Moved = (i32, PathBuf, PathBuf, String, Option<FitsMove>);

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
