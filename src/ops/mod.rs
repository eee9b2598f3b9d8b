//! Operator tools: `replay`, `resurvey` and `files`.
//!
//! Both page through the database by key (never OFFSET), keep every
//! transaction to one page, and are safe to stop and run again. The cores
//! ([`replay::replay`], [`resurvey::resurvey`]) are library functions over a
//! connection, so tests and benchmarks call them without a process; the
//! `run` functions only load, connect and print the summary line.

pub mod files;
mod progress;
pub mod replay;
pub mod resurvey;

pub use progress::Progress;

use sea_orm::{sqlx::PgPool, DatabaseConnection, DbBackend};

use crate::bus::BusError;

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
    if db.get_database_backend() != DbBackend::Postgres {
        return Err(OpsError::Invalid(
            "the operator tools need a PostgreSQL database".into(),
        ));
    }
    Ok(db.get_postgres_connection_pool())
}

/// A constraint or data error (SQLSTATE class 22 or 23) is the row's fault;
/// anything else (connection lost, restart, deadlock) may pass on retry.
pub(crate) fn is_permanent(e: &sea_orm::sqlx::Error) -> bool {
    match e {
        sea_orm::sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        _ => false,
    }
}

/// Worth retrying unchanged: the connection, the pool, or a server-side
/// condition (restart, deadlock, serialization) rather than the statement.
pub(crate) fn is_transient(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_) | Error::PoolTimedOut | Error::Tls(_) | Error::WorkerCrashed => true,
        Error::Database(db) => db.code().is_some_and(|c| {
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| c.starts_with(class))
        }),
        _ => false,
    }
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
