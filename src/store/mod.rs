//! PostgreSQL through SeaORM: connecting, migrating, and the few queries the
//! service needs.

pub mod committer;
mod connect;
pub mod cutouts;
pub mod entities;
pub mod on_demand;
pub mod outage;
pub mod outbox;
pub mod preview;
pub mod remote;
pub mod retry;
pub mod schema;
pub mod stamps;
pub mod sweep;
mod writes;

pub use connect::{connect, ensure_database, open};
pub use writes::{waves, write_batch, ObjRow, StoredRow, SurveyRow, WriteJob, Written};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};

/// Key of the advisory lock that serialises concurrent `migrate` runs
/// (sea-orm-migration has no lock of its own, sea-orm#1378).
const MIGRATION_LOCK: i64 = 0x7468_756d_626e_6c73; // "thumbnls"

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Where (host, port, database) and why, in words ([`connect`]
    /// classifies the driver's error: TLS, pg_hba, refused...).
    #[error("cannot connect to the database {at}: {cause}")]
    Connect { at: String, cause: String },
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
    /// What the error means for a retry: the connection (the database is
    /// away), transient (may succeed if retried unchanged: restart,
    /// deadlock) or permanent (never will).
    pub fn failure(&self) -> retry::Failure {
        match self {
            StoreError::Connect { .. } => retry::Failure::Connection,
            StoreError::Migrate(e) | StoreError::Db(e) => retry::classify(e),
            StoreError::Stamps(e) => retry::classify_sqlx(e),
            // A full or read-only disk may be fixed while the message waits.
            StoreError::File(_) => retry::Failure::Transient,
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

/// Applies pending migrations under an advisory lock, then the per-survey
/// unique indexes and the preview's index on `objs` (built `CONCURRENTLY`,
/// so outside any transaction: see [`stamps`]); safe to run twice and from
/// several processes at once.
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
            "per-survey thumbnail indexes and the preview index in place"
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
