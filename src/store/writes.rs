//! The worker's batched write: many objects' rows in one transaction.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, TransactionTrait};

use super::entities::{obj, thumbnail};
use super::StoreError;
use crate::surveys::{ThumbnailType, CURRENTLY_UNAVAILABLE};

/// Rows per INSERT statement; far below the 65,535 bind parameters limit.
const ROWS_PER_STATEMENT: usize = 4000;

#[derive(Debug, Clone, PartialEq)]
pub struct ObjRow {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub is_roid: bool,
}

/// An archival thumbnail row to insert. An existing row is overwritten only
/// when `replace` is set or it holds the "currently unavailable" placeholder.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyRow {
    pub ttype: ThumbnailType,
    pub public_url: String,
    pub replace: bool,
}

/// One object's share of a batch: ensure the obj row, then write its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteJob {
    pub obj: ObjRow,
    pub rows: Vec<SurveyRow>,
}

/// A row as committed, for the `thumbnail.stored` event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub id: i32,
    pub obj_id: String,
    pub ttype: ThumbnailType,
    pub public_url: Option<String>,
    pub file_uri: Option<String>,
}

impl From<thumbnail::Model> for StoredRow {
    fn from(m: thumbnail::Model) -> Self {
        Self {
            id: m.id,
            obj_id: m.obj_id,
            ttype: m.ttype.map(Into::into).unwrap_or(ThumbnailType::Sdss),
            public_url: m.public_url,
            file_uri: m.file_uri,
        }
    }
}

/// Writes every job in one transaction. Returns, per job, the rows that were
/// inserted or changed (unchanged rows are not returned).
pub async fn write_batch(
    db: &DatabaseConnection,
    jobs: &[WriteJob],
) -> Result<Vec<Vec<StoredRow>>, StoreError> {
    let mut out = vec![Vec::new(); jobs.len()];
    let now = Utc::now().naive_utc();
    let txn = db.begin().await?;
    // A DO UPDATE statement may touch a row once: split repeated objects into
    // waves so that no (obj_id, type) appears twice in one statement.
    for wave in waves(jobs) {
        let mut objs: Vec<&ObjRow> = wave.iter().map(|&i| &jobs[i].obj).collect();
        objs.sort_by(|a, b| a.id.cmp(&b.id));
        for chunk in objs.chunks(ROWS_PER_STATEMENT) {
            let models = chunk.iter().map(|o| obj::ActiveModel {
                id: Set(o.id.clone()),
                ra: Set(Some(o.ra)),
                dec: Set(Some(o.dec)),
                is_roid: Set(Some(o.is_roid)),
                internal_key: Set(uuid::Uuid::new_v4().to_string()),
                created_at: Set(now),
                modified: Set(now),
            });
            obj::Entity::insert_many(models)
                .on_conflict_do_nothing_on([obj::Column::Id])
                .exec_without_returning(&txn)
                .await?;
        }
        for replace in [false, true] {
            let mut rows: Vec<(usize, &SurveyRow)> = wave
                .iter()
                .flat_map(|&i| jobs[i].rows.iter().map(move |r| (i, r)))
                .filter(|(_, r)| r.replace == replace)
                .collect();
            rows.sort_by(|a, b| (&jobs[a.0].obj.id, a.1.ttype).cmp(&(&jobs[b.0].obj.id, b.1.ttype)));
            let owner: HashMap<(&str, ThumbnailType), usize> = rows
                .iter()
                .map(|(i, r)| ((jobs[*i].obj.id.as_str(), r.ttype), *i))
                .collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let models = chunk.iter().map(|(i, r)| thumbnail::ActiveModel {
                    created_at: Set(now),
                    modified: Set(now),
                    ttype: Set(Some(r.ttype.into())),
                    file_uri: Set(None),
                    public_url: Set(Some(r.public_url.clone())),
                    obj_id: Set(jobs[*i].obj.id.clone()),
                    ..Default::default()
                });
                let stored = thumbnail::Entity::insert_many(models)
                    .on_conflict(survey_conflict(replace))
                    .try_insert()
                    .exec_with_returning_many(&txn)
                    .await?;
                if let sea_orm::TryInsertResult::Inserted(models) = stored {
                    for m in models {
                        let row = StoredRow::from(m);
                        if let Some(&i) = owner.get(&(row.obj_id.as_str(), row.ttype)) {
                            out[i].push(row);
                        }
                    }
                }
            }
        }
    }
    txn.commit().await?;
    Ok(out)
}

/// On `(obj_id, type)` conflict, overwrite the URL only when asked to (or
/// when the stored one is the failed-lookup placeholder) and only if it
/// differs, so that unchanged rows are neither rewritten nor reported.
fn survey_conflict(replace: bool) -> OnConflict {
    let differs = Expr::cust(r#""thumbnails"."public_url" IS DISTINCT FROM "excluded"."public_url""#);
    let condition = if replace {
        differs
    } else {
        ExprTrait::eq(
            Expr::col((thumbnail::Entity, thumbnail::Column::PublicUrl)),
            CURRENTLY_UNAVAILABLE,
        )
        .and(differs)
    };
    OnConflict::columns([thumbnail::Column::ObjId, thumbnail::Column::Ttype])
        .update_columns([
            thumbnail::Column::PublicUrl,
            thumbnail::Column::FileUri,
            thumbnail::Column::Modified,
        ])
        .action_and_where(condition)
        .to_owned()
}

/// Groups job indexes so that each object appears at most once per group,
/// preserving arrival order between repeats of the same object.
fn waves(jobs: &[WriteJob]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let n = seen.entry(job.obj.id.as_str()).or_insert(0);
        if waves.len() <= *n {
            waves.push(Vec::new());
        }
        waves[*n].push(i);
        *n += 1;
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> WriteJob {
        WriteJob {
            obj: ObjRow {
                id: id.into(),
                ra: 1.0,
                dec: 2.0,
                is_roid: false,
            },
            rows: vec![],
        }
    }

    #[test]
    fn waves_never_repeat_an_object() {
        let jobs = [job("a"), job("b"), job("a"), job("a"), job("c")];
        assert_eq!(waves(&jobs), vec![vec![0, 1, 4], vec![2], vec![3]]);
    }
}
