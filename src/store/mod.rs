//! PostgreSQL through SeaORM: connecting, migrating, and the few queries the
//! service needs.

pub mod committer;
pub mod cutouts;
pub mod entities;
pub mod on_demand;
pub mod outbox;
pub mod remote;
pub mod retry;
pub mod schema;
pub mod stamps;
pub mod sweep;
mod writes;

pub use writes::{waves, write_batch, ObjRow, StoredRow, SurveyRow, WriteJob, Written};

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, TransactionTrait,
};

/// Key of the advisory lock that serialises concurrent `migrate` runs
/// (sea-orm-migration has no lock of its own, sea-orm#1378).
const MIGRATION_LOCK: i64 = 0x7468_756d_626e_6c73; // "thumbnls"

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[source] DbErr),
    #[error("building the per-survey thumbnail indexes failed: {0}")]
    Stamps(#[source] sea_orm::sqlx::Error),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("storing a file: {0}")]
    File(#[source] crate::files::FileError),
}

impl StoreError {
    /// A transient error may succeed if retried unchanged (connection lost,
    /// database restarting, deadlock); a permanent one never will.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Migrate(e) | StoreError::Db(e) => retry::classify(e).is_retryable(),
            StoreError::Stamps(e) => retry::classify_sqlx(e).is_retryable(),
            // A full or read-only disk may be fixed while the message waits.
            StoreError::File(_) => true,
        }
    }
}

/// The service runs on PostgreSQL only (its SQL is PostgreSQL's).
#[derive(Debug, thiserror::Error)]
#[error("{0} needs a PostgreSQL database")]
pub struct NotPostgres(pub &'static str);

/// The PostgreSQL pool under `db`, for the parts that speak sqlx directly
/// (`who` names them in the error).
pub fn pg_pool<'a>(
    db: &'a DatabaseConnection,
    who: &'static str,
) -> Result<&'a sea_orm::sqlx::PgPool, NotPostgres> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Err(NotPostgres(who));
    }
    Ok(db.get_postgres_connection_pool())
}

/// Opens the pool. Per-statement logging is off; slow statements are logged.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, StoreError> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(true)
        .sqlx_logging_level(tracing::log::LevelFilter::Trace)
        .sqlx_slow_statements_logging_settings(
            tracing::log::LevelFilter::Warn,
            Duration::from_secs(1),
        );
    Database::connect(opts)
        .await
        .map_err(|source| StoreError::Connect {
            url: crate::config::redact(url),
            source,
        })
}

/// Creates the database named in `url` if the server does not have it yet
/// (so `thumbnails run` works on a fresh server). Connects to the server's
/// `postgres` database for that.
pub async fn ensure_database(url: &str) -> Result<(), StoreError> {
    let Some((server, name)) = url.split('?').next().and_then(|u| u.rsplit_once('/')) else {
        return Ok(());
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Ok(());
    }
    let admin_url = format!("{server}/postgres");
    let admin = connect(&admin_url, 1).await?;
    let exists = |admin: DatabaseConnection| async move {
        admin
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                [name.into()],
            ))
            .await
            .map(|row| row.is_some())
    };
    if !exists(admin.clone()).await? {
        tracing::info!(database = name, "creating the database");
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        // Another process may have created it meanwhile.
        if let Err(e) = created {
            if !exists(admin.clone()).await? {
                return Err(e.into());
            }
        }
    }
    let _ = admin.close().await;
    Ok(())
}

/// Applies pending migrations under an advisory lock, then the per-survey
/// unique indexes (built `CONCURRENTLY`, so outside any transaction: see
/// [`stamps`]); safe to run twice and from several processes at once.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    migrate_transactional(db).await?;
    let report = stamps::apply(db).await.map_err(StoreError::Stamps)?;
    if report != stamps::StampsReport::default() {
        tracing::info!(
            normalised = report.normalised,
            removed = report.removed,
            built = report.built.len(),
            indexes = %report.built.join(","),
            dropped_old = report.dropped_old,
            "per-survey thumbnail indexes in place"
        );
    }
    Ok(())
}

async fn migrate_transactional(db: &DatabaseConnection) -> Result<(), StoreError> {
    let txn = db.begin().await.map_err(StoreError::Migrate)?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(StoreError::Migrate)?;
    Migrator::up(&txn, None)
        .await
        .map_err(StoreError::Migrate)?;
    txn.commit().await.map_err(StoreError::Migrate)?;
    Ok(())
}
