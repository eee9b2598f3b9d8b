//! The resurvey core: page, render, update the rows that differ.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sqlx::{self, PgPool};
use sea_orm::DatabaseConnection;
use serde_json::json;

use crate::bus::{Publisher, ROUTING_THUMBNAIL_STORED};
use crate::ops::{is_permanent, is_transient, pg_pool, OpsError, Progress};
use crate::surveys::{Templates, ThumbnailType};

/// Attempts of a page whose statement fails for a transient reason.
const ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct ResurveyOptions {
    /// `Sdss` and/or `Ls` (which also covers the retired `Dr8`).
    pub types: Vec<ThumbnailType>,
    pub batch_size: usize,
    pub dry_run: bool,
    /// Before/after samples to keep per type (dry runs show them).
    pub samples: usize,
    /// Show a progress bar or progress log lines.
    pub progress: bool,
}

/// One row's change, as shown by `--dry-run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: i32,
    pub obj_id: String,
    /// The stored type, and the type after the rewrite (a lone `dr8` row
    /// becomes `ls`).
    pub ttype: String,
    pub new_type: String,
    pub before: Option<String>,
    pub after: String,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retype = if self.ttype == self.new_type {
            String::new()
        } else {
            format!(", type {} -> {}", self.ttype, self.new_type)
        };
        write!(
            f,
            "  thumbnail {} (obj {}, {}{retype})\n    before: {}\n    after:  {}",
            self.id,
            self.obj_id,
            self.ttype,
            self.before.as_deref().unwrap_or("(null)"),
            self.after
        )
    }
}

/// Counts for one requested type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSummary {
    pub ttype: ThumbnailType,
    /// Survey rows of this type examined (for `ls`, `dr8` rows included).
    pub examined: u64,
    /// Rows changed (or, in a dry run, that would change).
    pub rewritten: u64,
    /// Rows whose object has no ra or dec.
    pub skipped: u64,
    /// Rows whose update failed permanently (logged with their id).
    pub failed: u64,
    pub samples: Vec<Sample>,
}

impl TypeSummary {
    fn new(ttype: ThumbnailType) -> Self {
        Self {
            ttype,
            examined: 0,
            rewritten: 0,
            skipped: 0,
            failed: 0,
            samples: Vec::new(),
        }
    }

    /// The summary line printed at the end of a run.
    pub fn line(&self, dry_run: bool) -> String {
        let (verb, tail) = if dry_run {
            ("would rewrite", "; dry run, nothing changed")
        } else {
            ("rewrote", "")
        };
        format!(
            "resurvey {}: {verb} {} of {} rows ({} skipped, {} failed{tail})",
            self.ttype, self.rewritten, self.examined, self.skipped, self.failed
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub types: Vec<TypeSummary>,
}

impl Summary {
    pub fn of(&self, ttype: ThumbnailType) -> Option<&TypeSummary> {
        self.types.iter().find(|t| t.ttype == ttype)
    }

    pub fn rewritten(&self) -> u64 {
        self.types.iter().map(|t| t.rewritten).sum()
    }
}

/// The stored types a requested type covers.
fn stored_types(t: ThumbnailType) -> &'static [&'static str] {
    match t {
        ThumbnailType::Ls => &["ls", "dr8"],
        ThumbnailType::Sdss => &["sdss"],
        _ => &[],
    }
}

/// Which requested type a stored type belongs to.
fn bucket(stored: &str) -> Option<ThumbnailType> {
    match stored {
        "sdss" => Some(ThumbnailType::Sdss),
        "ls" | "dr8" => Some(ThumbnailType::Ls),
        _ => None,
    }
}

const COUNT: &str = "SELECT count(*) FROM thumbnails t
    WHERE t.type::text = ANY($1) AND (t.origin IS NULL OR t.origin = 'survey')";

/// One page of survey rows with their object's position. `lone_dr8` is a
/// `dr8` row whose object has no `ls` row (it will become that row).
const PAGE: &str = "SELECT t.id, t.obj_id, t.type::text, t.public_url, o.ra, o.dec,
        (t.type = 'dr8' AND NOT EXISTS (
            SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls')) AS lone_dr8
    FROM thumbnails t JOIN objs o ON o.id = t.obj_id
    WHERE t.id > $1 AND t.type::text = ANY($2) AND (t.origin IS NULL OR t.origin = 'survey')
    ORDER BY t.id
    LIMIT $3";

/// Rewrites the given rows; re-checks every condition, so a row changed
/// meanwhile (by the worker, or another resurvey) is left alone or counted
/// once. A `dr8` row becomes `ls` only if the object still has no `ls` row.
const UPDATE: &str = "UPDATE thumbnails t
    SET public_url = v.url,
        type = CASE WHEN t.type = 'dr8' AND NOT EXISTS (
                   SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls')
               THEN 'ls'::thumbnail_types ELSE t.type END,
        modified = $3
    FROM unnest($1::int4[], $2::text[]) AS v(id, url)
    WHERE t.id = v.id
      AND (t.origin IS NULL OR t.origin = 'survey')
      AND (t.public_url IS DISTINCT FROM v.url
           OR (t.type = 'dr8' AND NOT EXISTS (
               SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls')))
    RETURNING t.id, t.obj_id, t.type::text, t.public_url, t.file_uri, t.origin";

type PageRow = (
    i32,
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<f64>,
    bool,
);
type Updated = (
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Rewrites every survey row of `opts.types` whose URL differs from the
/// current template. With `publisher`, each rewritten row is announced with
/// `thumbnail.stored` before its page commits (a spurious refresh after a
/// failed commit is harmless; a missed one is not).
pub async fn resurvey(
    db: &DatabaseConnection,
    templates: &Templates,
    publisher: Option<&Publisher>,
    opts: &ResurveyOptions,
) -> Result<Summary, OpsError> {
    let pool = pg_pool(db)?;
    let mut requested: Vec<ThumbnailType> = Vec::new();
    for t in &opts.types {
        if stored_types(*t).is_empty() {
            return Err(OpsError::Invalid(format!(
                "resurvey rewrites sdss and ls only, not {t}"
            )));
        }
        if !requested.contains(t) {
            requested.push(*t);
        }
    }
    let stored: Vec<String> = requested
        .iter()
        .flat_map(|t| stored_types(*t).iter().map(|s| s.to_string()))
        .collect();
    let mut summary = Summary {
        types: requested.iter().map(|t| TypeSummary::new(*t)).collect(),
    };
    let label = format!(
        "resurvey {}",
        requested
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let total = if opts.progress {
        let (n,): (i64,) = sqlx::query_as(COUNT).bind(&stored).fetch_one(pool).await?;
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    };
    let mut progress = Progress::new(&label, "rows", total, opts.progress);
    let limit = i64::try_from(opts.batch_size.max(1)).unwrap_or(10_000);
    let mut last = 0i32;
    loop {
        let page: Vec<PageRow> = with_retries(|| {
            sqlx::query_as(PAGE)
                .bind(last)
                .bind(&stored)
                .bind(limit)
                .fetch_all(pool)
        })
        .await?;
        let Some(end) = page.last().map(|r| r.0) else {
            break;
        };
        let mut ids = Vec::new();
        let mut urls = Vec::new();
        let mut buckets = Vec::new();
        for (id, obj_id, ttype, before, ra, dec, lone_dr8) in &page {
            let Some(b) = bucket(ttype) else { continue };
            let Some(counts) = summary.types.iter_mut().find(|s| s.ttype == b) else {
                continue;
            };
            counts.examined += 1;
            let (Some(ra), Some(dec)) = (ra, dec) else {
                counts.skipped += 1;
                continue;
            };
            let Some(url) = templates.url(b, *ra, *dec) else {
                continue;
            };
            if before.as_deref() == Some(url.as_str()) && !lone_dr8 {
                continue;
            }
            if opts.dry_run {
                counts.rewritten += 1;
                if counts.samples.len() < opts.samples {
                    counts.samples.push(Sample {
                        id: *id,
                        obj_id: obj_id.clone(),
                        ttype: ttype.clone(),
                        new_type: if *lone_dr8 {
                            "ls".into()
                        } else {
                            ttype.clone()
                        },
                        before: before.clone(),
                        after: url,
                    });
                }
            } else {
                ids.push(*id);
                urls.push(url);
                buckets.push(b);
            }
        }
        if !ids.is_empty() {
            let (updated, failed) =
                update_page(pool, publisher, ids, urls, buckets, &progress).await?;
            for (_, _, ttype, ..) in &updated {
                if let Some(s) =
                    bucket(ttype).and_then(|b| summary.types.iter_mut().find(|s| s.ttype == b))
                {
                    s.rewritten += 1;
                }
            }
            for b in failed {
                if let Some(s) = summary.types.iter_mut().find(|s| s.ttype == b) {
                    s.failed += 1;
                }
            }
        }
        progress.inc(page.len() as u64);
        progress.set_message(format!("{} rewritten", summary.rewritten()));
        last = end;
        if page.len() < opts.batch_size {
            break;
        }
    }
    progress.finish();
    Ok(summary)
}

/// Updates one page in one transaction. A page refused for a reason that is
/// the data's (a constraint, a value) is retried row by row so that one bad
/// row does not hold back the others; the failed rows' types are returned. Transient errors are retried with backoff, then returned.
async fn update_page(
    pool: &PgPool,
    publisher: Option<&Publisher>,
    ids: Vec<i32>,
    urls: Vec<String>,
    buckets: Vec<ThumbnailType>,
    progress: &Progress,
) -> Result<(Vec<Updated>, Vec<ThumbnailType>), OpsError> {
    match with_retries(|| update(pool, publisher, &ids, &urls)).await {
        Ok(rows) => return Ok((rows, Vec::new())),
        Err(OpsError::Db(e)) if is_permanent(&e) => {
            progress.suspend(
                || tracing::warn!(error = %e, "a page was refused; retrying its rows one by one"),
            );
        }
        Err(e) => return Err(e),
    }
    let mut updated = Vec::new();
    let mut failed = Vec::new();
    for ((id, url), b) in ids.into_iter().zip(urls).zip(buckets) {
        let one = [id];
        match with_retries(|| update(pool, publisher, &one, std::slice::from_ref(&url))).await {
            Ok(rows) => updated.extend(rows),
            Err(OpsError::Db(e)) if is_permanent(&e) => {
                progress.suspend(|| tracing::warn!(id, error = %e, "cannot rewrite thumbnail"));
                failed.push(b);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((updated, failed))
}

async fn update(
    pool: &PgPool,
    publisher: Option<&Publisher>,
    ids: &[i32],
    urls: &[String],
) -> Result<Vec<Updated>, OpsError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Updated> = sqlx::query_as(UPDATE)
        .bind(ids)
        .bind(urls)
        .bind(Utc::now().naive_utc())
        .fetch_all(&mut *tx)
        .await?;
    if let Some(publisher) = publisher {
        let bodies: Vec<Vec<u8>> = rows.iter().map(stored_event).collect();
        for chunk in bodies.chunks(1000) {
            // Not mandatory: nobody listening for thumbnail.stored is fine.
            publisher
                .publish_many(ROUTING_THUMBNAIL_STORED, chunk, false)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(rows)
}

/// The `thumbnail.stored` body (the contract's shape, as the worker sends it).
fn stored_event(row: &Updated) -> Vec<u8> {
    let (id, obj_id, ttype, public_url, file_uri, origin) = row;
    serde_json::to_vec(&json!({
        "id": id,
        "obj_id": obj_id,
        "type": ttype,
        "public_url": public_url,
        "file_uri": file_uri,
        "origin": origin.as_deref().unwrap_or("survey"),
    }))
    .unwrap_or_default()
}

/// Retries `f` while it fails for a transient database reason.
async fn with_retries<T, F, Fut, E>(mut f: F) -> Result<T, OpsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<OpsError>,
{
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match f().await.map_err(Into::into) {
            Err(OpsError::Db(e)) if is_transient(&e) && attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "database error; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
