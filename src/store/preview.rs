//! The preview pages' reads. Each page is one indexed query, plus the
//! feed backlog (a bounded count) on the list page:
//!
//! - an object with its thumbnails: `objs` by primary key, `thumbnails`
//!   by `obj_id` (the leading column of the per-survey unique index);
//! - the newest objects by key `(created_at, id)` (index
//!   `thumbnails_objs_created_at_id_idx`, built `CONCURRENTLY` by
//!   [`super::stamps`]),
//!   each with its thumbnails, in one statement.

use chrono::NaiveDateTime;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};

use crate::surveys::ThumbnailType;

/// Objects per list page.
pub const PAGE_SIZE: u64 = 50;
/// The backlog is counted up to this many rows (a count of a table grown
/// to millions while the broker was away would cost a scan).
pub const BACKLOG_CAP: i64 = 10_000;

/// An object as the pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjSummary {
    pub id: String,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub created_at: NaiveDateTime,
}

/// A thumbnail row as the pages show it. `ttype` is `None` for a NULL type.
#[derive(Debug, Clone, PartialEq)]
pub struct ThumbRow {
    pub id: i32,
    pub ttype: Option<ThumbnailType>,
    pub survey: Option<String>,
    pub origin: Option<String>,
    pub public_url: Option<String>,
    pub file_uri: Option<String>,
    pub is_grayscale: Option<bool>,
    pub created_at: NaiveDateTime,
    pub modified: NaiveDateTime,
}

/// An object and every one of its rows (id order).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjRows {
    pub obj: ObjSummary,
    pub rows: Vec<ThumbRow>,
}

/// Where a list page starts: the last object of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: NaiveDateTime,
    pub id: String,
}

const COLUMNS: &str = "o.id, o.ra, o.dec, o.created_at,
    t.id, t.type::text, t.survey, t.origin, t.public_url, t.file_uri,
    t.is_grayscale, t.created_at, t.modified";

/// One object's page.
pub const OBJ_SQL: &str = "SELECT o.id, o.ra, o.dec, o.created_at,
    t.id, t.type::text, t.survey, t.origin, t.public_url, t.file_uri,
    t.is_grayscale, t.created_at, t.modified
  FROM objs o LEFT JOIN thumbnails t ON t.obj_id = o.id
  WHERE o.id = $1
  ORDER BY t.id";

/// The list page's statement: `$1`, `$2` the cursor (when `after`), then
/// the survey (when `survey`), then the limit.
pub fn latest_sql(after: bool, survey: bool) -> String {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if after {
        let (a, b) = (next(), next());
        conditions.push(format!("(o.created_at, o.id) < (${a}, ${b})"));
    }
    if survey {
        let s = next();
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM thumbnails s WHERE s.obj_id = o.id AND s.survey = ${s})"
        ));
    }
    let limit = next();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "WITH page AS (
           SELECT o.id, o.ra, o.dec, o.created_at FROM objs o {filter}
           ORDER BY o.created_at DESC, o.id DESC LIMIT ${limit})
         SELECT {COLUMNS} FROM page o LEFT JOIN thumbnails t ON t.obj_id = o.id
         ORDER BY o.created_at DESC, o.id DESC, t.id"
    )
}

/// The object and its rows, or `None` if there is no such object.
pub async fn obj_with_thumbnails(
    db: &DatabaseConnection,
    obj_id: &str,
) -> Result<Option<ObjRows>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            OBJ_SQL,
            [obj_id.into()],
        ))
        .await?;
    Ok(group(&rows)?.into_iter().next())
}

/// The newest `limit` objects before `after` (newest first), only those
/// with a row of `survey` when given, each with its rows.
pub async fn latest_objs(
    db: &DatabaseConnection,
    after: Option<&Cursor>,
    survey: Option<&str>,
    limit: u64,
) -> Result<Vec<ObjRows>, DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    if let Some(c) = after {
        values.push(c.created_at.into());
        values.push(c.id.clone().into());
    }
    if let Some(s) = survey {
        values.push(s.into());
    }
    values.push((limit as i64).into());
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            latest_sql(after.is_some(), survey.is_some()),
            values,
        ))
        .await?;
    group(&rows)
}

/// Rows waiting in the feed's outbox (`thumbnails_feed_outbox`), counted up
/// to [`BACKLOG_CAP`]; each row holds the ids of one `INSERT` statement.
pub async fn feed_backlog(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FROM (SELECT 1 FROM thumbnails_feed_outbox LIMIT $1) b",
            [BACKLOG_CAP.into()],
        ))
        .await?;
    match row {
        Some(r) => r.try_get_by_index(0),
        None => Ok(0),
    }
}

/// Joined rows (object columns repeated) to objects with their rows, in
/// the order the objects first appear.
fn group(rows: &[QueryResult]) -> Result<Vec<ObjRows>, DbErr> {
    let mut out: Vec<ObjRows> = Vec::new();
    for r in rows {
        let id: String = r.try_get_by_index(0)?;
        if out.last().is_none_or(|o| o.obj.id != id) {
            out.push(ObjRows {
                obj: ObjSummary {
                    id,
                    ra: r.try_get_by_index(1)?,
                    dec: r.try_get_by_index(2)?,
                    created_at: r.try_get_by_index(3)?,
                },
                rows: Vec::new(),
            });
        }
        let Some(tid) = r.try_get_by_index::<Option<i32>>(4)? else {
            continue; // an object without rows (LEFT JOIN)
        };
        let ttype: Option<String> = r.try_get_by_index(5)?;
        let row = ThumbRow {
            id: tid,
            // A value this version does not know is shown as no type.
            ttype: ttype.and_then(|t| t.parse().ok()),
            survey: r.try_get_by_index(6)?,
            origin: r.try_get_by_index(7)?,
            public_url: r.try_get_by_index(8)?,
            file_uri: r.try_get_by_index(9)?,
            is_grayscale: r.try_get_by_index(10)?,
            created_at: r.try_get_by_index(11)?,
            modified: r.try_get_by_index(12)?,
        };
        if let Some(last) = out.last_mut() {
            last.rows.push(row);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_statement_numbers_its_parameters() {
        let plain = latest_sql(false, false);
        assert!(
            plain.contains("LIMIT $1") && !plain.contains("WHERE"),
            "{plain}"
        );
        let both = latest_sql(true, true);
        assert!(both.contains("(o.created_at, o.id) < ($1, $2)"), "{both}");
        assert!(
            both.contains("s.survey = $3") && both.contains("LIMIT $4"),
            "{both}"
        );
        let survey = latest_sql(false, true);
        assert!(
            survey.contains("s.survey = $1") && survey.contains("LIMIT $2"),
            "{survey}"
        );
    }
}
