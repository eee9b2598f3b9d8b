//! An index on `objs (created_at, id)`: the preview list pages the newest
//! objects by that key (never OFFSET). SkyPortal's `objs` gains an index
//! only, with `IF NOT EXISTS`; nothing of the table changes.
//!
//! Built inside the migrations' transaction (not `CONCURRENTLY`): writes to
//! `objs` wait while it is built, a few seconds per million objects.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

/// The index's name (the preview tests look for it).
pub const INDEX: &str = "thumbnails_objs_created_at_id_idx";

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000001_preview_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {INDEX} ON objs (created_at, id)"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await?;
        Ok(())
    }
}
