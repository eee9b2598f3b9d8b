//! The grayscale pass's queries: its pages and verdicts, with its retry
//! table `thumbnail_remote_attempts`.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Statement, TransactionTrait,
};

use super::entities::thumbnail;
use super::outbox::{self, Pending};
use crate::bus::ROUTING_THUMBNAIL_STORED;
use crate::surveys::{ThumbnailType, OUTSIDE_SURVEY};

/// Longest wait between two tries of one row.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A stored survey row whose image is still to classify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub id: i32,
    pub ttype: ThumbnailType,
    pub url: String,
}

/// Survey rows (`types`) after `after` in id order, without a grayscale
/// verdict, with an absolute URL (placeholders and uploads are never
/// fetched) and no retry wait pending. A retry wait belongs to a URL: a
/// row whose URL changed (resurvey, replay) is due at once.
const PENDING_PAGE: &str = "SELECT t.id, t.type::text, t.public_url
    FROM thumbnails t
    LEFT JOIN thumbnail_remote_attempts a ON a.thumbnail_id = t.id AND a.url = t.public_url
    WHERE t.id > $1
      AND t.is_grayscale IS NULL
      AND t.type::text = ANY($2::text[])
      AND (t.public_url ILIKE 'https://%' OR t.public_url ILIKE 'http://%')
      AND t.file_uri IS NULL
      AND t.origin IS DISTINCT FROM 'upload'
      AND (a.thumbnail_id IS NULL OR a.next_attempt_at <= now() AT TIME ZONE 'UTC')
    ORDER BY t.id
    LIMIT $3";

/// One page by key (never OFFSET).
pub async fn pending_page(
    db: &DatabaseConnection,
    after: i32,
    types: &[ThumbnailType],
    limit: u64,
) -> Result<Vec<PendingRow>, DbErr> {
    let types: Vec<String> = types.iter().map(|t| t.as_str().to_string()).collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            PENDING_PAGE,
            [after.into(), types.into(), (limit as i64).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let ttype: String = r.try_get_by_index(1)?;
            Ok(PendingRow {
                id: r.try_get_by_index(0)?,
                ttype: ttype
                    .parse()
                    .map_err(|e: crate::surveys::UnknownType| DbErr::Type(e.to_string()))?,
                url: r.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// Records the verdict if the row still has the URL that was fetched and
/// no verdict; forgets its retry wait. Returns whether the row changed.
pub async fn set_grayscale(
    db: &DatabaseConnection,
    row: &PendingRow,
    is_grayscale: bool,
) -> Result<bool, DbErr> {
    let now = Utc::now().naive_utc();
    let changed = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE thumbnails SET is_grayscale = $2, modified = $4
             WHERE id = $1 AND public_url = $3 AND is_grayscale IS NULL",
            [
                row.id.into(),
                is_grayscale.into(),
                row.url.as_str().into(),
                now.into(),
            ],
        ))
        .await?
        .rows_affected();
    forget(db, row.id).await?;
    Ok(changed > 0)
}

/// Replaces the row's URL with the outside-survey placeholder (if it still
/// has the fetched URL and is not an upload), with its `thumbnail.stored`
/// event in the same transaction. Returns the event to publish.
pub async fn mark_outside(
    db: &DatabaseConnection,
    row: &PendingRow,
) -> Result<Option<Pending>, DbErr> {
    let now = Utc::now().naive_utc();
    let txn = db.begin().await?;
    let changed = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE thumbnails SET public_url = $3, modified = $4
             WHERE id = $1 AND public_url = $2 AND file_uri IS NULL
               AND origin IS DISTINCT FROM 'upload'",
            [
                row.id.into(),
                row.url.as_str().into(),
                OUTSIDE_SURVEY.into(),
                now.into(),
            ],
        ))
        .await?
        .rows_affected();
    let event = if changed > 0 {
        match thumbnail::Entity::find_by_id(row.id).one(&txn).await? {
            Some(model) => Some(
                outbox::enqueue_pending(
                    &txn,
                    ROUTING_THUMBNAIL_STORED,
                    outbox::stored_event(&model),
                )
                .await?,
            ),
            None => None,
        }
    } else {
        None
    };
    forget(&txn, row.id).await?;
    txn.commit().await?;
    Ok(event)
}

async fn forget<C: ConnectionTrait>(db: &C, id: i32) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "DELETE FROM thumbnail_remote_attempts WHERE thumbnail_id = $1",
        [id.into()],
    ))
    .await?;
    Ok(())
}

/// `$3`: a fixed wait (seconds) or NULL for the doubling back-off from
/// `$4` (base) up to `$5` (cap); `$7`: 1 to count a failure, 0 not to
/// (the server asked us to wait: not the row's fault).
const RECORD_ATTEMPT: &str = "INSERT INTO thumbnail_remote_attempts AS a
      (thumbnail_id, url, attempts, next_attempt_at, last_error, updated_at)
    SELECT $1, $2, n.attempts,
      now() AT TIME ZONE 'UTC' + make_interval(secs => COALESCE($3::float8,
        least($5::float8, $4::float8 * power(2, greatest(least(n.attempts - 1, 30), 0))))),
      $6, now() AT TIME ZONE 'UTC'
    FROM (SELECT COALESCE((SELECT attempts FROM thumbnail_remote_attempts
                           WHERE thumbnail_id = $1 AND url = $2), 0) + $7::int AS attempts) n
    ON CONFLICT (thumbnail_id) DO UPDATE SET url = EXCLUDED.url,
      attempts = EXCLUDED.attempts, next_attempt_at = EXCLUDED.next_attempt_at,
      last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at
    RETURNING attempts";

/// Counts a failed try; the row waits `base * 2^(attempts-1)` (at most a
/// day) before the next. Returns the number of failures so far.
pub async fn record_failure<C: ConnectionTrait>(
    db: &C,
    row: &PendingRow,
    error: &str,
    base: Duration,
) -> Result<i32, DbErr> {
    record(db, row, None, base, error, 1).await
}

/// The row waits `wait` (a server's 429), without counting a failure.
pub async fn defer<C: ConnectionTrait>(
    db: &C,
    row: &PendingRow,
    wait: Duration,
    reason: &str,
) -> Result<(), DbErr> {
    record(db, row, Some(wait), Duration::ZERO, reason, 0)
        .await
        .map(|_| ())
}

async fn record<C: ConnectionTrait>(
    db: &C,
    row: &PendingRow,
    wait: Option<Duration>,
    base: Duration,
    error: &str,
    count: i32,
) -> Result<i32, DbErr> {
    let found = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD_ATTEMPT,
            [
                row.id.into(),
                row.url.as_str().into(),
                wait.map(|w| w.as_secs_f64()).into(),
                base.as_secs_f64().into(),
                MAX_RETRY_WAIT.as_secs_f64().into(),
                error.into(),
                count.into(),
            ],
        ))
        .await?
        .ok_or(DbErr::RecordNotInserted)?;
    found.try_get_by_index(0)
}

/// Removes retry rows of deleted thumbnails (there is no foreign key).
pub async fn forget_orphans(db: &DatabaseConnection) -> Result<u64, DbErr> {
    Ok(db
        .execute_unprepared(
            "DELETE FROM thumbnail_remote_attempts a
             WHERE NOT EXISTS (SELECT 1 FROM thumbnails t WHERE t.id = a.thumbnail_id)",
        )
        .await?
        .rows_affected())
}
