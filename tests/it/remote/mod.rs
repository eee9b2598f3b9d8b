//! Fetching from survey servers (issue 11): the grayscale pass and the
//! on-demand surveys, against local stand-ins for the image servers.

mod grayscale;
mod on_demand;
mod standin;

use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::TestDb;

/// Inserts a thumbnail row; returns its id.
pub async fn add_row(
    db: &TestDb,
    obj_id: &str,
    ttype: &str,
    url: &str,
    is_grayscale: Option<bool>,
    origin: Option<&str>,
) -> i32 {
    let row = db
        .db
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id, is_grayscale, origin)
             VALUES (now() at time zone 'utc', now() at time zone 'utc', $1::thumbnail_types, $2, $3, $4, $5)
             RETURNING id",
            [
                ttype.into(),
                url.into(),
                obj_id.into(),
                is_grayscale.into(),
                origin.map(str::to_string).into(),
            ],
        ))
        .await
        .expect("insert thumbnail")
        .expect("a row");
    row.try_get_by_index(0).expect("id")
}

/// `(public_url, is_grayscale)` of a row.
pub async fn row_state(db: &TestDb, id: i32) -> (Option<String>, Option<bool>) {
    let row = db
        .db
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT public_url, is_grayscale FROM thumbnails WHERE id = $1",
            [id.into()],
        ))
        .await
        .expect("select")
        .expect("row exists");
    (
        row.try_get_by_index(0).expect("url"),
        row.try_get_by_index(1).expect("grey"),
    )
}
