//! The worker's batched write: many objects' rows in one transaction.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, TransactionTrait,
};

use super::entities::thumbnail;
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
    /// The event came from the database: never insert this object; if it is
    /// gone, write nothing for it ([`Written::gone`]).
    pub existing: bool,
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
    /// Also report the object's stored ps1 URL (read in the same
    /// transaction, batched), so the caller can skip a needless lookup.
    pub probe_ps1: bool,
    /// The event's order for this object (`ObjCreated::seq`): refused
    /// ([`Written::stale`]) if a newer one was applied already.
    pub seq: Option<i64>,
}

/// What a job's write did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Written {
    /// Rows inserted or changed.
    pub stored: Vec<StoredRow>,
    /// With `probe_ps1`: the stored ps1 URL, if the object has one.
    pub ps1_url: Option<String>,
    /// An `existing` object no longer in `objs` (deleted meanwhile):
    /// nothing was written for it.
    pub gone: bool,
    /// A newer event of the object was applied already: nothing written.
    pub stale: bool,
}

/// A row as committed, for the `thumbnail.stored` event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub id: i32,
    pub obj_id: String,
    pub ttype: ThumbnailType,
    pub public_url: Option<String>,
    pub file_uri: Option<String>,
    /// `None` (SkyPortal's survey rows), `survey` or `upload`.
    pub origin: Option<String>,
    /// The alert stream of a stamp; `None` for archival rows.
    pub survey: Option<String>,
    /// The public URL of the original cutout this write kept beside the
    /// stamp (`cutouts.keep_fits`); not a column: set by the writer.
    pub fits_url: Option<String>,
}

impl<'a> From<&'a StoredRow> for crate::bus::StoredThumbnail<'a> {
    fn from(row: &'a StoredRow) -> Self {
        Self::new(
            row.id,
            row.ttype.as_str(),
            row.public_url.as_deref(),
            row.file_uri.as_deref(),
            row.origin.as_deref(),
            row.survey.as_deref(),
        )
        .with_fits_url(row.fits_url.as_deref())
    }
}

impl StoredRow {
    /// `thumbnail.stored` bodies for `rows`: one per object.
    pub fn stored_events(rows: &[StoredRow]) -> Vec<Vec<u8>> {
        crate::bus::ThumbnailStored::bodies(rows.iter().map(|r| (r.obj_id.as_str(), r.into())))
    }
}

impl StoredRow {
    /// Reads `id, obj_id, type::text, public_url, file_uri, origin, survey`.
    pub(super) fn from_query(row: &QueryResult) -> Result<Self, DbErr> {
        let ttype: String = row.try_get_by_index(2)?;
        Ok(Self {
            id: row.try_get_by_index(0)?,
            obj_id: row.try_get_by_index(1)?,
            ttype: ttype
                .parse()
                .map_err(|e: crate::surveys::UnknownType| DbErr::Type(e.to_string()))?,
            public_url: row.try_get_by_index(3)?,
            file_uri: row.try_get_by_index(4)?,
            origin: row.try_get_by_index(5)?,
            survey: row.try_get_by_index(6)?,
            fits_url: None,
        })
    }
}

impl StoredRow {
    /// A row read through the entity; `None` for a row without a type
    /// (SkyPortal's column is nullable).
    pub fn from_model(m: thumbnail::Model) -> Option<Self> {
        Some(Self {
            id: m.id,
            obj_id: m.obj_id,
            ttype: m.ttype?.into(),
            public_url: m.public_url,
            file_uri: m.file_uri,
            origin: m.origin,
            survey: m.survey,
            fits_url: None,
        })
    }
}

/// Objects are inserted if absent and never overwritten. One fixed
/// statement over arrays: prepared once per connection whatever the batch
/// size, with six bind parameters instead of several per row; `$from` adds
/// to its FROM list.
macro_rules! insert_objs {
    ($from:literal) => {
        concat!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
    SELECT x.id, x.ra, x.dec, x.is_roid, x.internal_key, $6, $6
    FROM unnest($1::text[], $2::float8[], $3::float8[], $4::bool[], $5::text[])
      AS x(id, ra, dec, is_roid, internal_key)",
            $from,
            "
    ON CONFLICT (id) DO NOTHING"
        )
    };
}

/// The worker's: the one-row `set_config` marks the transaction as the
/// worker's, before the insert's statement trigger runs: the database feed
/// must not announce objects the worker is handling already (a duplicate
/// `obj.created`).
pub(super) const INSERT_OBJS: &str =
    insert_objs!(",\n      (SELECT set_config('thumbnails.feed_skip', 'on', true)) AS feed_skip");

/// For objects an alert creates: the feed (when on) announces them like any
/// other insert, so they get their archival thumbnails too.
pub(super) const INSERT_OBJS_ANNOUNCED: &str = insert_objs!("");

/// One of the `insert_objs!` statements over `(id, ra, dec, is_roid)` rows,
/// each object given a new `internal_key`.
pub(super) fn insert_objs_statement<'a>(
    sql: &str,
    rows: impl Iterator<Item = (&'a str, f64, f64, bool)>,
    now: chrono::NaiveDateTime,
) -> Statement {
    let (mut ids, mut ras, mut decs, mut roids, mut keys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, ra, dec, is_roid) in rows {
        ids.push(id.to_owned());
        ras.push(ra);
        decs.push(dec);
        roids.push(is_roid);
        keys.push(uuid::Uuid::new_v4().to_string());
    }
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [
            ids.into(),
            ras.into(),
            decs.into(),
            roids.into(),
            keys.into(),
            now.into(),
        ],
    )
}

/// Survey rows are the archival ones (survey NULL), so the conflict names
/// the partial index of those (src/store/stamps.rs).
/// On `(obj_id, type)` conflict the URL is overwritten only when asked to
/// (`$6`) or when the stored one is the failed-lookup placeholder (`$5`),
/// and only if it differs: unchanged rows are neither rewritten nor returned.
/// A user's upload is never overwritten by a survey URL.
const UPSERT_THUMBNAILS: &str =
    "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
    SELECT $4, $4, x.type::thumbnail_types, x.url, x.obj_id
    FROM unnest($1::text[], $2::text[], $3::text[]) AS x(obj_id, type, url)
    ON CONFLICT (obj_id, type) WHERE survey IS NULL DO UPDATE
      SET public_url = EXCLUDED.public_url, file_uri = NULL, modified = EXCLUDED.modified
      WHERE (thumbnails.public_url = $5 OR $6)
        AND thumbnails.public_url IS DISTINCT FROM EXCLUDED.public_url
        AND thumbnails.origin IS DISTINCT FROM 'upload'
    RETURNING id, obj_id, type::text, public_url, file_uri, origin, survey";

/// The `existing` objects still present, locked until commit so that a
/// concurrent delete waits for the rows written for them (and then
/// cascades) instead of failing their insert.
const LOCK_EXISTING: &str = "SELECT id FROM objs WHERE id = ANY($1::text[]) FOR KEY SHARE";

/// Records each ordered job's `seq` unless a newer one is recorded; returns
/// the objects whose write may go on (an equal `seq` may: the same event's
/// second write, or its redelivery).
const ORDER: &str = "INSERT INTO thumbnails_event_order (obj_id, seq)
    SELECT * FROM unnest($1::text[], $2::int8[])
    ON CONFLICT (obj_id) DO UPDATE SET seq = EXCLUDED.seq
      WHERE thumbnails_event_order.seq <= EXCLUDED.seq
    RETURNING obj_id";

const PROBE_PS1: &str = "SELECT obj_id, public_url FROM thumbnails
    WHERE type = 'ps1' AND survey IS NULL AND obj_id = ANY($1::text[])";

/// Writes every job in one transaction. Returns, per job, the rows that were
/// inserted or changed (unchanged rows are not returned). Its time goes to
/// `thumbnails_worker_write_duration_seconds{outcome}`.
pub async fn write_batch(
    db: &DatabaseConnection,
    jobs: &[WriteJob],
) -> Result<Vec<Written>, StoreError> {
    let started = std::time::Instant::now();
    let result = write_batch_untimed(db, jobs).await;
    let outcome = if result.is_ok() {
        "committed"
    } else {
        "failed"
    };
    metrics::histogram!("thumbnails_worker_write_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

async fn write_batch_untimed(
    db: &DatabaseConnection,
    jobs: &[WriteJob],
) -> Result<Vec<Written>, StoreError> {
    let mut out = vec![Written::default(); jobs.len()];
    let now = Utc::now().naive_utc();
    let txn = db.begin().await?;
    let existing: Vec<String> = jobs
        .iter()
        .filter(|j| j.obj.existing)
        .map(|j| j.obj.id.clone())
        .collect();
    if !existing.is_empty() {
        let present: std::collections::HashSet<String> = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                LOCK_EXISTING,
                [existing.into()],
            ))
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, DbErr>>()?;
        for (job, written) in jobs.iter().zip(out.iter_mut()) {
            written.gone = job.obj.existing && !present.contains(&job.obj.id);
        }
    }
    // A DO UPDATE statement may touch a row once: split repeated objects into
    // waves so that no (obj_id, type) appears twice in one statement. Rows
    // are sorted so concurrent writers lock in the same order.
    for mut wave in waves(jobs, |j| j.obj.id.as_str()) {
        wave.sort_by(|a, b| jobs[*a].obj.id.cmp(&jobs[*b].obj.id));
        let ordered: Vec<usize> = wave
            .iter()
            .copied()
            .filter(|&i| jobs[i].seq.is_some() && !out[i].gone)
            .collect();
        if !ordered.is_empty() {
            let applied: std::collections::HashSet<String> = txn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    ORDER,
                    [
                        ordered
                            .iter()
                            .map(|&i| jobs[i].obj.id.clone())
                            .collect::<Vec<_>>()
                            .into(),
                        ordered
                            .iter()
                            .map(|&i| jobs[i].seq.unwrap_or_default())
                            .collect::<Vec<_>>()
                            .into(),
                    ],
                ))
                .await?
                .iter()
                .map(|r| r.try_get_by_index(0))
                .collect::<Result<_, DbErr>>()?;
            for &i in &ordered {
                out[i].stale = !applied.contains(&jobs[i].obj.id);
            }
        }
        let skip: Vec<bool> = out.iter().map(|w| w.gone || w.stale).collect();
        for chunk in wave.chunks(ROWS_PER_STATEMENT) {
            let objs: Vec<&ObjRow> = chunk
                .iter()
                .map(|&i| &jobs[i].obj)
                .filter(|o| !o.existing)
                .collect();
            if objs.is_empty() {
                continue;
            }
            let rows = objs.iter().map(|o| (o.id.as_str(), o.ra, o.dec, o.is_roid));
            txn.execute_raw(insert_objs_statement(INSERT_OBJS, rows, now))
                .await?;
        }
        for replace in [false, true] {
            let rows: Vec<(&str, &SurveyRow, usize)> = wave
                .iter()
                .filter(|&&i| !skip[i])
                .flat_map(|&i| {
                    jobs[i]
                        .rows
                        .iter()
                        .map(move |r| (jobs[i].obj.id.as_str(), r, i))
                })
                .filter(|(_, r, _)| r.replace == replace)
                .collect();
            let owner: HashMap<(&str, ThumbnailType), usize> =
                rows.iter().map(|(id, r, i)| ((*id, r.ttype), *i)).collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let stored = txn
                    .query_all_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        UPSERT_THUMBNAILS,
                        [
                            chunk
                                .iter()
                                .map(|(id, _, _)| id.to_string())
                                .collect::<Vec<_>>()
                                .into(),
                            chunk
                                .iter()
                                .map(|(_, r, _)| r.ttype.as_str().to_owned())
                                .collect::<Vec<_>>()
                                .into(),
                            chunk
                                .iter()
                                .map(|(_, r, _)| r.public_url.clone())
                                .collect::<Vec<_>>()
                                .into(),
                            now.into(),
                            CURRENTLY_UNAVAILABLE.into(),
                            replace.into(),
                        ],
                    ))
                    .await?;
                for row in stored {
                    let row = StoredRow::from_query(&row)?;
                    if let Some(&i) = owner.get(&(row.obj_id.as_str(), row.ttype)) {
                        out[i].stored.push(row);
                    }
                }
            }
        }
    }
    let probed: Vec<String> = jobs
        .iter()
        .filter(|j| j.probe_ps1)
        .map(|j| j.obj.id.clone())
        .collect();
    if !probed.is_empty() {
        let found: HashMap<String, Option<String>> = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                PROBE_PS1,
                [probed.into()],
            ))
            .await?
            .iter()
            .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
            .collect::<Result<_, DbErr>>()?;
        for (job, written) in jobs.iter().zip(out.iter_mut()) {
            if job.probe_ps1 {
                written.ps1_url = found.get(&job.obj.id).cloned().flatten();
            }
        }
    }
    txn.commit().await?;
    Ok(out)
}

/// Groups item indexes so that each key appears at most once per group,
/// preserving arrival order between repeats of the same key (a DO UPDATE
/// statement may touch a row only once).
pub fn waves<'a, T, K: Eq + std::hash::Hash>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<Vec<usize>> {
    let mut seen: HashMap<K, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = seen.entry(key(item)).or_insert(0);
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

    #[test]
    fn stored_events_carry_the_row_origin_one_event_per_object() {
        let row = |id, obj_id: &str, origin: Option<&str>| StoredRow {
            id,
            obj_id: obj_id.into(),
            ttype: ThumbnailType::Ps1,
            public_url: Some("/static/thumbnails/aa/bb/ZTF1_ps1.png".into()),
            file_uri: None,
            origin: origin.map(Into::into),
            survey: None,
            fits_url: None,
        };
        let rows = [
            row(1, "ZTF1", Some("upload")),
            row(2, "ZTF2", None),
            row(3, "ZTF1", None),
        ];
        let events: Vec<serde_json::Value> = StoredRow::stored_events(&rows)
            .iter()
            .map(|b| serde_json::from_slice(b).expect("json"))
            .collect();
        assert_eq!(events.len(), 2);
        // A redelivered event re-announces an upload of its types as one.
        assert_eq!(events[0]["thumbnails"][0]["origin"], "upload");
        assert_eq!(events[0]["thumbnails"][1]["origin"], "survey");
        assert_eq!(events[1]["obj_id"], "ZTF2");
    }

    fn job(id: &str) -> WriteJob {
        WriteJob {
            obj: ObjRow {
                id: id.into(),
                ra: 1.0,
                dec: 2.0,
                is_roid: false,
                existing: false,
            },
            rows: vec![],
            probe_ps1: false,
            seq: None,
        }
    }

    #[test]
    fn waves_never_repeat_an_object() {
        let jobs = [job("a"), job("b"), job("a"), job("a"), job("c")];
        assert_eq!(
            waves(&jobs, |j| j.obj.id.as_str()),
            vec![vec![0, 1, 4], vec![2], vec![3]]
        );
    }
}
