//! The statements of a resurvey page: read, update, announce.

use chrono::Utc;
use sea_orm::sqlx::{self, PgPool};

use crate::bus::{Publisher, StoredThumbnail, ThumbnailStored, ROUTING_THUMBNAIL_STORED};
use crate::ops::{begin, is_permanent, OpsError, Progress};
use crate::store::retry::is_unique_violation;
use crate::surveys::ThumbnailType;

/// [`crate::ops::with_retries`], also running again on a unique violation. The
/// only unique key a rewrite can break is `(obj_id, type)`, when `dr8`
/// becomes `ls` while a writer (the worker) inserts the object's `ls` row
/// after the statement looked; run again, it sees that row and leaves the
/// `dr8` row's type alone.
async fn with_retries<T, F, Fut, E>(f: F) -> Result<T, OpsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<OpsError>,
{
    crate::ops::with_retries(is_unique_violation, f).await
}

/// The rows of one page to rewrite, in id order, with their new URLs and
/// the requested type each belongs to.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub ids: Vec<i32>,
    pub urls: Vec<String>,
    pub buckets: Vec<ThumbnailType>,
}

/// Survey rows: origin NULL (SkyPortal's) or `survey` (ours), no stored
/// file (a row with a file is an upload whatever its origin says), and no
/// `survey` label (an alert stamp is not an archival cutout). A `dr8` row
/// turned `ls` keeps survey NULL, so it lands on the archival unique index
/// `(obj_id, type) WHERE survey IS NULL`.
pub(super) const COUNT: &str = "SELECT count(*) FROM thumbnails t
    WHERE t.type = ANY($1::text[]::thumbnail_types[])
      AND (t.origin IS NULL OR t.origin = 'survey') AND t.file_uri IS NULL
      AND t.survey IS NULL";

/// One page of survey rows with their object's position. `lone_dr8` is a
/// `dr8` row whose object has no `ls` row (it will become that row).
const PAGE: &str = "SELECT t.id, t.obj_id, t.type::text, t.public_url, o.ra, o.dec,
        (t.type = 'dr8' AND NOT EXISTS (
            SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls'
                 AND x.survey IS NULL)) AS lone_dr8
    FROM thumbnails t JOIN objs o ON o.id = t.obj_id
    WHERE t.id > $1 AND t.type = ANY($2::text[]::thumbnail_types[])
      AND (t.origin IS NULL OR t.origin = 'survey') AND t.file_uri IS NULL
      AND t.survey IS NULL
    ORDER BY t.id
    LIMIT $3";

/// Rewrites the given rows; re-checks every condition, so a row changed
/// meanwhile (by the worker, or another resurvey) is left alone or counted
/// once. A `dr8` row becomes `ls` only if the object still has no `ls` row.
/// The `BETWEEN` bound (the page's id range) keeps the plan an index range
/// scan: without it the planner, knowing the array holds thousands of ids,
/// may hash-join against a scan of the whole table on every page.
const UPDATE: &str = "UPDATE thumbnails t
    SET public_url = v.url,
        type = CASE WHEN t.type = 'dr8' AND NOT EXISTS (
                   SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls'
                 AND x.survey IS NULL)
               THEN 'ls'::thumbnail_types ELSE t.type END,
        modified = $3
    FROM unnest($1::int4[], $2::text[]) AS v(id, url)
    WHERE t.id = v.id
      AND t.id BETWEEN $4 AND $5
      AND (t.origin IS NULL OR t.origin = 'survey') AND t.file_uri IS NULL
      AND t.survey IS NULL
      AND (t.public_url IS DISTINCT FROM v.url
           OR (t.type = 'dr8' AND NOT EXISTS (
               SELECT 1 FROM thumbnails x WHERE x.obj_id = t.obj_id AND x.type = 'ls'
                 AND x.survey IS NULL)))
    RETURNING t.id, t.obj_id, t.type::text, t.public_url, t.file_uri, t.origin, t.survey";

pub(super) type PageRow = (
    i32,
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<f64>,
    bool,
);
/// `id, obj_id, type, public_url, file_uri, origin, survey` of a rewritten row.
pub(super) type Updated = (
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Reads the page after `last`, in its own short transaction.
pub(super) async fn read_page(
    pool: &PgPool,
    last: i32,
    stored: &[String],
    limit: i64,
) -> Result<Vec<PageRow>, OpsError> {
    with_retries(|| async {
        let mut tx = begin(pool).await?;
        let rows = sqlx::query_as(PAGE)
            .bind(last)
            .bind(stored)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    })
    .await
}

/// Updates one page in one transaction. A page refused for a reason that is
/// the data's (a constraint, a value) is retried row by row so that one bad
/// row does not hold back the others; the failed rows' types are returned. Transient errors are retried with backoff, then returned.
pub(super) async fn update_page(
    pool: &PgPool,
    publisher: Option<&Publisher>,
    changes: Changes,
    progress: &Progress,
) -> Result<(Vec<Updated>, Vec<ThumbnailType>), OpsError> {
    let Changes { ids, urls, buckets } = changes;
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
    let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok(Vec::new());
    };
    let mut tx = begin(pool).await?;
    let rows: Vec<Updated> = sqlx::query_as(UPDATE)
        .bind(ids)
        .bind(urls)
        .bind(Utc::now().naive_utc())
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *tx)
        .await?;
    if let Some(publisher) = publisher {
        let bodies = stored_events(&rows);
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

/// The `thumbnail.stored` bodies of a page: one per object.
fn stored_events(rows: &[Updated]) -> Vec<Vec<u8>> {
    ThumbnailStored::bodies(
        rows.iter()
            .map(|(id, obj_id, ttype, url, file, origin, survey)| {
                let row = StoredThumbnail::new(
                    *id,
                    ttype,
                    url.as_deref(),
                    file.as_deref(),
                    origin.as_deref(),
                    survey.as_deref(),
                );
                (obj_id.as_str(), row)
            }),
    )
}
