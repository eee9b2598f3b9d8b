//! Alert stamps per survey (issue 11), and the preview's index on `objs`:
//! the schema step that cannot run in a transaction, so `migrate` runs it
//! after `Migrator::up`, every time (it returns after a few catalog queries
//! once done).
//!
//! Uploads are unique on `(obj_id, type, survey)`, a NULL survey being the
//! archival/legacy row. A plain unique index on the three columns would let
//! NULL-survey duplicates in (NULLs are distinct; `NULLS NOT DISTINCT` needs
//! PostgreSQL 15, older servers are still in use), so two indexes:
//!
//! - [`ARCHIVAL_KEY`]: unique `(obj_id, type) WHERE survey IS NULL`;
//!   writers say `ON CONFLICT (obj_id, type) WHERE survey IS NULL`.
//! - [`SURVEY_KEY`]: unique `(obj_id, type, survey)`, not partial: for
//!   non-NULL surveys it is exactly the constraint, and being whole it also
//!   serves every `WHERE obj_id = ..` lookup (the `objs` delete cascade, the
//!   list route) that the old `(obj_id, type)` index served. Writers say
//!   `ON CONFLICT (obj_id, type, survey) WHERE survey IS NOT NULL`.
//!
//! The step, under a session advisory lock of its own:
//! 1. de-duplicate by `(obj_id, type, upper(survey))`, keeping the newest
//!    row (`created_at`, then `id`), in batches of short transactions (only
//!    needed when the old `(obj_id, type)` index is absent: with it no two
//!    rows can share the finer key);
//! 2. upper-case `survey` (`Ztf` -> `ZTF`; blank -> NULL);
//! 3. build both indexes `CONCURRENTLY` (writers keep writing), dropping
//!    first an invalid one left by an interrupted build; a build that fails
//!    on a duplicate written meanwhile (SkyPortal has no constraint) is
//!    dropped, de-duplicated again and retried;
//! 4. drop the old `thumbnails_obj_id_type_key`, which would refuse a
//!    second survey's stamp of the same type;
//! 5. build the preview's index on `objs (created_at, id)`
//!    ([`migration::PREVIEW_INDEX`]) `CONCURRENTLY` too: SkyPortal keeps
//!    inserting objects while it is built (migration m20261207_000001
//!    built it inside the migrations' transaction, which held those inserts
//!    for the whole build; it now leaves it to this step).

use std::time::{Duration, Instant};

use sea_orm::sqlx::{
    self, pool::PoolConnection, AssertSqlSafe, Connection, PgConnection, Postgres,
};
use sea_orm::DatabaseConnection;

use super::retry::is_unique_violation;

pub const ARCHIVAL_KEY: &str = "thumbnails_obj_id_type_archival_key";
pub const SURVEY_KEY: &str = "thumbnails_obj_id_type_survey_key";
/// The `(obj_id, type)` index of migration m20261125_000001, before stamps.
pub const OLD_KEY: &str = "thumbnails_obj_id_type_key";

/// Its own key, not the migrations' transaction lock: a process waiting on
/// that lock inside a transaction holds a snapshot, and `CREATE INDEX
/// CONCURRENTLY` waits for every older snapshot, so sharing it would deadlock.
const STAMPS_LOCK: i64 = 0x7468_756d_6273_746d; // "thumbstm"
/// Rows deleted per de-duplication transaction.
pub const DEDUP_BATCH: usize = 10_000;
/// Attempts at building an index that a concurrent duplicate spoiled.
const BUILD_ATTEMPTS: u32 = 3;

const INDEXES: [(&str, &str); 2] = [
    (
        ARCHIVAL_KEY,
        "ON thumbnails (obj_id, type) WHERE survey IS NULL",
    ),
    (SURVEY_KEY, "ON thumbnails (obj_id, type, survey)"),
];

/// The survey a key is made of: upper-cased, trimmed, blank = NULL.
const NORM: &str = "NULLIF(upper(btrim(survey)), '')";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StampsReport {
    /// Rows whose survey was upper-cased or blanked.
    pub normalised: u64,
    /// Duplicate rows deleted (their files, if any, are left for
    /// `thumbnails files audit --delete-orphans`).
    pub removed: u64,
    /// Indexes built by this run.
    pub built: Vec<&'static str>,
    /// Whether this run dropped the old `(obj_id, type)` index.
    pub dropped_old: bool,
}

#[derive(Debug, Clone, Copy)]
struct IndexState {
    exists: bool,
    valid: bool,
}

/// Runs the step on a connection of its own (the session lock and the
/// `CONCURRENTLY` statements need one session, outside any transaction).
/// The connection is closed at the end, which also frees the lock if an
/// error skipped the unlock.
pub async fn apply(db: &DatabaseConnection) -> Result<StampsReport, sqlx::Error> {
    let pool = db.get_postgres_connection_pool();
    let mut conn = PoolConnection::<Postgres>::detach(pool.acquire().await?);
    let result = async {
        if done(&mut conn).await? {
            return Ok(StampsReport::default());
        }
        lock(&mut conn).await?;
        let report = run(&mut conn).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(STAMPS_LOCK)
            .execute(&mut conn)
            .await?;
        report
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Waits for the lock with `pg_try_advisory_lock`, holding no snapshot
/// between tries (see [`STAMPS_LOCK`]).
async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut told = false;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(STAMPS_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            return Ok(());
        }
        if !told {
            tracing::info!("another migrate is building the indexes; waiting for it");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn index_state(conn: &mut PgConnection, name: &str) -> Result<IndexState, sqlx::Error> {
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT i.indisvalid AND i.indisready FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname = $1 AND pg_table_is_visible(c.oid)",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(IndexState {
        exists: valid.is_some(),
        valid: valid.unwrap_or(false),
    })
}

/// The preview's index on `objs`, not unique.
const PREVIEW_INDEX: (&str, &str) = (migration::PREVIEW_INDEX, "ON objs (created_at, id)");

/// Steps 1 to 5 all done.
async fn done(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    Ok(survey_indexes_done(conn).await? && index_state(conn, PREVIEW_INDEX.0).await?.valid)
}

/// Both new indexes valid and the old one gone (steps 1 to 4).
async fn survey_indexes_done(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    for (name, _) in INDEXES {
        if !index_state(conn, name).await?.valid {
            return Ok(false);
        }
    }
    Ok(!index_state(conn, OLD_KEY).await?.exists)
}

async fn run(conn: &mut PgConnection) -> Result<StampsReport, sqlx::Error> {
    let mut report = StampsReport::default();
    // Either may have been done by another process while we waited for
    // the lock.
    if !survey_indexes_done(conn).await? {
        survey_indexes(conn, &mut report).await?;
    }
    preview_index(conn, &mut report).await?;
    Ok(report)
}

/// Steps 1 to 4.
async fn survey_indexes(
    conn: &mut PgConnection,
    report: &mut StampsReport,
) -> Result<(), sqlx::Error> {
    let old = index_state(conn, OLD_KEY).await?;
    if !old.valid {
        report.removed += dedup(conn).await?;
    }
    report.normalised = sqlx::query(AssertSqlSafe(format!(
        "UPDATE thumbnails SET survey = {NORM}
         WHERE survey IS NOT NULL AND survey IS DISTINCT FROM {NORM}"
    )))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    for (name, definition) in INDEXES {
        let mut attempt = 1;
        loop {
            match build(conn, "UNIQUE INDEX", name, definition).await {
                Ok(built) => {
                    if built {
                        report.built.push(name);
                    }
                    break;
                }
                Err(e) if is_unique_violation(&e) && attempt < BUILD_ATTEMPTS => {
                    tracing::warn!(index = name, error = %e, "a duplicate was written during the build; de-duplicating again");
                    report.removed += dedup(conn).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    if old.exists {
        drop_index(conn, OLD_KEY).await?;
        report.dropped_old = true;
    }
    Ok(())
}

/// Step 5.
async fn preview_index(
    conn: &mut PgConnection,
    report: &mut StampsReport,
) -> Result<(), sqlx::Error> {
    let (name, definition) = PREVIEW_INDEX;
    if build(conn, "INDEX", name, definition).await? {
        report.built.push(name);
    }
    Ok(())
}

/// Builds `CREATE <create> CONCURRENTLY <name> <definition>` unless the
/// index is valid (`Ok(false)`), dropping first an invalid one left by an
/// interrupted build. A failed build is dropped too: no invalid index is
/// left for writers to maintain.
async fn build(
    conn: &mut PgConnection,
    create: &str,
    name: &str,
    definition: &str,
) -> Result<bool, sqlx::Error> {
    let state = index_state(conn, name).await?;
    if state.valid {
        return Ok(false);
    }
    if state.exists {
        tracing::warn!(
            index = name,
            "dropping an invalid index left by an interrupted build"
        );
        drop_index(conn, name).await?;
    }
    let started = Instant::now();
    let built = sqlx::query(AssertSqlSafe(format!(
        "CREATE {create} CONCURRENTLY IF NOT EXISTS {name} {definition}"
    )))
    .execute(&mut *conn)
    .await;
    if let Err(e) = built {
        let _ = drop_index(conn, name).await;
        return Err(e);
    }
    tracing::info!(
        index = name,
        elapsed_s = started.elapsed().as_secs_f64(),
        "built"
    );
    Ok(true)
}

async fn drop_index(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {name}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes every row that has a newer one of the same `(obj_id, type,
/// upper(survey))`; returns how many. One read finds them, then short
/// transactions of [`DEDUP_BATCH`] rows delete them, each row only if its
/// newer twin still exists (so a twin deleted meanwhile keeps this one).
pub async fn dedup(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let started = Instant::now();
    let ids: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM (
           SELECT id, row_number() OVER (
             PARTITION BY obj_id, type, {NORM} ORDER BY created_at DESC, id DESC) AS rn
           FROM thumbnails WHERE type IS NOT NULL) d
         WHERE rn > 1 ORDER BY id"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let mut removed = 0;
    for batch in ids.chunks(DEDUP_BATCH) {
        removed += sqlx::query(
            "DELETE FROM thumbnails t WHERE t.id = ANY($1) AND EXISTS (
               SELECT 1 FROM thumbnails k
               WHERE k.obj_id = t.obj_id AND k.type = t.type
                 AND NULLIF(upper(btrim(k.survey)), '') IS NOT DISTINCT FROM NULLIF(upper(btrim(t.survey)), '')
                 AND (k.created_at, k.id) > (t.created_at, t.id))",
        )
        .bind(batch)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            elapsed_s = started.elapsed().as_secs_f64(),
            "removed duplicate thumbnail rows, keeping the newest of each (obj_id, type, survey)"
        );
    }
    Ok(removed)
}
