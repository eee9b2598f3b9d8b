//! `thumbnails files migrate --to URL`: copies every stored file (and the
//! kept FITS beside a stamp) from the configured storage to another one
//! (`s3://BUCKET/PREFIX`, or `file://PATH`), at the same path under
//! `thumbnails/`, and points its row there (`file_uri`, and `public_url`
//! under the target's `storage.public_base_url`), one page of rows per
//! transaction.
//!
//! Resumable: a row already pointing at the target is no longer the
//! source's, so a second run moves only what the first did not (or what
//! the service wrote meanwhile). A row is repointed only if its `file_uri`
//! is still the one copied (an upload meanwhile wins). The source files
//! are left where they are: remove them once the service runs on the
//! target and a last run moved nothing.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use sea_orm::sqlx::{self, PgPool};
use tokio_util::sync::CancellationToken;

use crate::files::{fits_beside, FileError, FileStore};
use crate::ops::{begin, OpsError, Progress};

/// Files copied at once (a bucket's writes are network round trips).
const CONCURRENT: usize = 16;

const COUNT: &str = "SELECT count(*) FROM thumbnails WHERE file_uri IS NOT NULL";
const PAGE: &str = "SELECT id, file_uri FROM thumbnails
    WHERE id > $1 AND file_uri IS NOT NULL ORDER BY id LIMIT $2";
const REPOINT: &str = "UPDATE thumbnails t SET file_uri = v.uri, public_url = v.url
    FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[]) AS v(id, old, uri, url)
    WHERE t.id = v.id AND t.file_uri = v.old";

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub dry_run: bool,
    pub batch_size: usize,
    pub progress: bool,
    pub stop: CancellationToken,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateSummary {
    /// Rows naming a file of the source storage.
    pub rows: u64,
    /// Of those, copied and repointed (or, in a dry run, to be).
    pub moved: u64,
    /// Kept FITS copied beside their stamps.
    pub fits: u64,
    pub bytes: u64,
    /// Rows whose file the source does not have (left as they are).
    pub missing: u64,
    /// Rows naming a file elsewhere (already on the target, or foreign).
    pub other: u64,
    /// Rows changed meanwhile by an upload (left to it).
    pub raced: u64,
    /// Copies that failed (logged with their path).
    pub failed: u64,
    pub interrupted: bool,
}

impl MigrateSummary {
    pub fn line(&self, from: &FileStore, to: &FileStore, dry_run: bool) -> String {
        let moved = if dry_run { "to move" } else { "moved" };
        format!(
            "files migrate{}: from the {} to the {}: {} rows with a source file, {} {moved} ({} bytes, {} kept FITS), \
             {} missing, {} elsewhere, {} changed meanwhile, {} failed",
            if dry_run { " (dry run)" } else { "" },
            from.describe(),
            to.describe(),
            self.rows,
            self.moved,
            self.bytes,
            self.fits,
            self.missing,
            self.other,
            self.raced,
            self.failed,
        )
    }
}

/// One row's files to copy.
struct Move {
    id: i32,
    old_uri: String,
    /// `aa/bb/name` under `thumbnails/`.
    path: String,
}

/// What copying one row's files did.
enum Copied {
    /// PNG bytes, and whether a kept FITS went along (its bytes).
    Done(u64, Option<u64>),
    Missing,
    Failed,
}

pub async fn migrate(
    pool: &PgPool,
    from: &FileStore,
    to: &FileStore,
    opts: &MigrateOptions,
) -> Result<MigrateSummary, OpsError> {
    let mut summary = MigrateSummary::default();
    let total: i64 = sqlx::query_scalar(COUNT).fetch_one(pool).await?;
    let mut progress = Progress::new(
        "files migrate",
        "rows",
        u64::try_from(total).unwrap_or(0),
        opts.progress,
    );
    let mut after = 0i32;
    loop {
        if opts.stop.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let page: Vec<(i32, String)> = sqlx::query_as(PAGE)
            .bind(after)
            .bind(i64::try_from(opts.batch_size).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        progress.inc(page.len() as u64);
        let moves: Vec<Move> = page
            .into_iter()
            .filter_map(|(id, uri)| match from.layout_path_of(&uri) {
                Some(path) => Some(Move {
                    id,
                    old_uri: uri,
                    path,
                }),
                None => {
                    summary.other += 1;
                    None
                }
            })
            .collect();
        summary.rows += moves.len() as u64;
        if opts.dry_run {
            for m in &moves {
                match from.read_layout(&m.path).await {
                    Ok(Some(b)) => {
                        summary.moved += 1;
                        summary.bytes += b.len() as u64;
                    }
                    Ok(None) => summary.missing += 1,
                    Err(e) => {
                        tracing::warn!(path = %m.path, error = %crate::telemetry::cause_chain(&e), "cannot read a file to migrate");
                        summary.failed += 1;
                    }
                }
            }
            continue;
        }
        let copied: Vec<(Move, Copied)> = stream::iter(moves)
            .map(|m| async move {
                let done = copy(from, to, &m.path).await;
                (m, done)
            })
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        let mut repoint: (Vec<i32>, Vec<String>, Vec<String>, Vec<String>) = Default::default();
        for (m, done) in copied {
            match done {
                Copied::Done(bytes, fits) => {
                    summary.bytes += bytes + fits.unwrap_or(0);
                    summary.fits += u64::from(fits.is_some());
                    repoint.0.push(m.id);
                    repoint.2.push(to.uri_of_layout(&m.path));
                    repoint.3.push(to.public_url_of_layout(&m.path));
                    repoint.1.push(m.old_uri);
                }
                Copied::Missing => summary.missing += 1,
                Copied::Failed => summary.failed += 1,
            }
        }
        let tried = repoint.0.len() as u64;
        let mut tx = begin(pool).await?;
        let changed = sqlx::query(REPOINT)
            .bind(&repoint.0)
            .bind(&repoint.1)
            .bind(&repoint.2)
            .bind(&repoint.3)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        summary.moved += changed;
        summary.raced += tried - changed;
    }
    progress.finish();
    Ok(summary)
}

/// Copies `path` (and a stamp's kept FITS beside it) from `from` to `to`.
async fn copy(from: &FileStore, to: &FileStore, path: &str) -> Copied {
    let report = |e: FileError| {
        tracing::warn!(path = %path, error = %crate::telemetry::cause_chain(&e), "cannot migrate a file");
        Copied::Failed
    };
    let png: Bytes = match from.read_layout(path).await {
        Ok(Some(b)) => b,
        Ok(None) => return Copied::Missing,
        Err(e) => return report(e),
    };
    let size = png.len() as u64;
    let mut fits_size = None;
    if let Some(fits) = fits_beside(std::path::Path::new(path)) {
        let fits = fits.to_string_lossy().into_owned();
        match from.read_layout(&fits).await {
            Ok(Some(b)) => {
                fits_size = Some(b.len() as u64);
                if let Err(e) = to.write_layout(&fits, b).await {
                    return report(e);
                }
            }
            Ok(None) => {}
            Err(e) => return report(e),
        }
    }
    match to.write_layout(path, png).await {
        Ok(()) => Copied::Done(size, fits_size),
        Err(e) => report(e),
    }
}
