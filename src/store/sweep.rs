//! The reconcile sweep's queries: keyset pages over `objs`, each checked
//! against `thumbnails` as a set (two range scans of the `(obj_id, type)`
//! unique index and of the partial ps1-placeholder index), never a probe or
//! an anti-join per object.

use chrono::NaiveDateTime;
use sea_orm::sqlx::{self, PgConnection};

/// Advisory lock key: one sweep at a time across replicas ("thmbswep").
pub const SWEEP_LOCK: i64 = 0x7468_6d62_7377_6570;

/// The last id of the page after `$1` of at most `$2` objects (an
/// index-only walk of the primary key).
const PAGE_END: &str = "SELECT max(id) FROM
    (SELECT id FROM objs WHERE id > $1 ORDER BY id LIMIT $2) p";

/// The objects with ids in `($1, $2]` that lack sdss, ls or ps1, or whose ps1
/// row is the failed-lookup placeholder last touched before `$3`. Moving
/// objects and objects without a position are never missing; types made on
/// demand (sm, hst, chandra, jwst) and alert stamps do not count. The
/// placeholder is written out (not bound) so the planner can use the
/// partial index `thumbnails_ps1_unavailable_idx`.
const INCOMPLETE: &str = "SELECT o.id, o.ra, o.dec,
        COALESCE(h.sdss, false), COALESCE(h.ls, false), COALESCE(h.ps1, false),
        r.obj_id IS NOT NULL
    FROM objs o
    LEFT JOIN (
        SELECT obj_id, bool_or(type = 'sdss') AS sdss, bool_or(type = 'ls') AS ls,
               bool_or(type = 'ps1') AS ps1
        FROM thumbnails
        WHERE obj_id > $1 AND obj_id <= $2 AND type IN ('sdss', 'ls', 'ps1')
          AND survey IS NULL
        GROUP BY obj_id) h ON h.obj_id = o.id
    LEFT JOIN (
        SELECT obj_id FROM thumbnails
        WHERE type = 'ps1' AND public_url = '/static/images/currently_unavailable.png'
          AND survey IS NULL
          AND obj_id > $1 AND obj_id <= $2 AND modified < $3) r ON r.obj_id = o.id
    WHERE o.id > $1 AND o.id <= $2
      AND o.ra IS NOT NULL AND o.dec IS NOT NULL AND o.is_roid IS NOT TRUE
      AND (h.obj_id IS NULL OR NOT (h.sdss AND h.ls AND h.ps1) OR r.obj_id IS NOT NULL)
    ORDER BY o.id";

/// Marks the placeholders the sweep asked to look up again as tried now,
/// so the next sweep waits `reconcile.ps1_retry_after_s` (a lookup that
/// fails again leaves the same URL, which the worker does not rewrite).
const STAMP_PS1: &str = "UPDATE thumbnails SET modified = $2
    WHERE type = 'ps1' AND public_url = '/static/images/currently_unavailable.png'
      AND obj_id = ANY($1)";

/// An object the sweep found incomplete.
#[derive(Debug, Clone, PartialEq)]
pub struct Incomplete {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub has_sdss: bool,
    pub has_ls: bool,
    pub has_ps1: bool,
    /// Its ps1 row is a placeholder due for another lookup.
    pub ps1_retry: bool,
}

/// One page: where it ended (`None`: no objects after the start) and what
/// in it is incomplete.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepPage {
    pub end: Option<String>,
    pub incomplete: Vec<Incomplete>,
}

/// Reads the page after `after` (`""` = the first), at most `batch` objects.
pub async fn sweep_page(
    conn: &mut PgConnection,
    after: &str,
    batch: i64,
    retry_before: NaiveDateTime,
) -> Result<SweepPage, sqlx::Error> {
    let (end,): (Option<String>,) = sqlx::query_as(PAGE_END)
        .bind(after)
        .bind(batch)
        .fetch_one(&mut *conn)
        .await?;
    let Some(end) = end else {
        return Ok(SweepPage::default());
    };
    // INCOMPLETE keeps only objects with a position.
    type Row = (String, f64, f64, bool, bool, bool, bool);
    let rows: Vec<Row> = sqlx::query_as(INCOMPLETE)
        .bind(after)
        .bind(&end)
        .bind(retry_before)
        .fetch_all(&mut *conn)
        .await?;
    let incomplete = rows
        .into_iter()
        .map(
            |(id, ra, dec, has_sdss, has_ls, has_ps1, ps1_retry)| Incomplete {
                id,
                ra,
                dec,
                has_sdss,
                has_ls,
                has_ps1,
                ps1_retry,
            },
        )
        .collect();
    Ok(SweepPage {
        end: Some(end),
        incomplete,
    })
}

/// See [`STAMP_PS1`].
pub async fn stamp_ps1_retry(
    conn: &mut PgConnection,
    obj_ids: &[String],
    now: NaiveDateTime,
) -> Result<u64, sqlx::Error> {
    if obj_ids.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(STAMP_PS1)
        .bind(obj_ids)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surveys::CURRENTLY_UNAVAILABLE;

    #[test]
    fn the_written_out_placeholder_is_the_one_the_worker_writes() {
        let quoted = format!("'{CURRENTLY_UNAVAILABLE}'");
        assert!(INCOMPLETE.contains(&quoted));
        assert!(STAMP_PS1.contains(&quoted));
    }
}
