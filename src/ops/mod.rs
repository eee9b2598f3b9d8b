//! Operator tools: `replay`, `resurvey`, `files`, `cutouts` (drawing
//! alert cutouts without a database) and `dead-letters migrate`.
//!
//! Both page through the database by key (never OFFSET), keep every
//! transaction to one page, and are safe to stop and run again. The cores
//! ([`replay::replay`], [`resurvey::resurvey`]) are library functions over a
//! connection, so tests and benchmarks call them without a process; the
//! `run` functions only load, connect and print the summary line.

pub mod cutouts;
pub mod dead_letters;
pub mod files;
mod progress;
pub mod replay;
pub mod resurvey;

pub use progress::Progress;

use sea_orm::{sqlx::PgPool, DatabaseConnection};

use crate::bus::BusError;
use crate::store::retry::{self, Backoff, Gave};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::sqlx::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{0}")]
    Invalid(String),
    /// Publishing stopped part-way; the events before it were confirmed.
    #[error("{source} (after {published} events were confirmed; run again to continue)")]
    PublishFailed {
        published: u64,
        #[source]
        source: BusError,
    },
}

/// The PostgreSQL pool behind a SeaORM connection: the operator queries use
/// arrays (`unnest`) and typed rows, which sqlx binds directly.
pub(crate) fn pg_pool(db: &DatabaseConnection) -> Result<&PgPool, OpsError> {
    crate::store::pg_pool(db, "the operator tools").map_err(|e| OpsError::Invalid(e.to_string()))
}

/// Runs `f` with the operator tools' retry policy ([`Backoff::FEW`]):
/// errors [`crate::store::retry`] calls retryable, and those `also` names,
/// are tried again; the rest, or the last attempt's, are returned.
pub(crate) async fn with_retries<T, F, Fut, E>(
    also: impl Fn(&sea_orm::sqlx::Error) -> bool,
    mut f: F,
) -> Result<T, OpsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<OpsError>,
{
    let judge = |e: &OpsError| match e {
        OpsError::Db(e) if retry::classify_sqlx(e).is_retryable() || also(e) => {
            retry::Failure::Transient
        }
        _ => retry::Failure::Permanent,
    };
    let attempt = || {
        let fut = f();
        async move { fut.await.map_err(Into::into) }
    };
    retry::retry(Backoff::FEW, None, judge, None, attempt)
        .await
        .map_err(|gave| match gave {
            Gave::Up(e) => e,
            Gave::Stopped => OpsError::Invalid("stopped".into()),
        })
}

/// Whether the database refused the statement for its data (the row's
/// fault, never passing on retry).
pub(crate) fn is_permanent(e: &sea_orm::sqlx::Error) -> bool {
    retry::classify_sqlx(e) == retry::Failure::Permanent
}

/// Begins a short transaction for one page. JIT is off inside it: these
/// statements are cheap index walks, but a planner that misjudges a keyset
/// page (a `LIMIT` parameter, an array of types) can price them above
/// `jit_above_cost` and then spend far longer compiling than running.
pub(crate) async fn begin(
    pool: &PgPool,
) -> Result<sea_orm::sqlx::Transaction<'static, sea_orm::sqlx::Postgres>, sea_orm::sqlx::Error> {
    let mut tx = pool.begin().await?;
    sea_orm::sqlx::query("SET LOCAL jit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
