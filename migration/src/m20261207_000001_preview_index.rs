//! An index on `objs (created_at, id)`: the preview list pages the newest
//! objects by that key (never OFFSET). SkyPortal's `objs` gains an index
//! only; nothing of the table changes.
//!
//! This migration built it inside the migrations' transaction, so
//! SkyPortal's inserts into `objs` waited for the whole build (a few seconds
//! per million objects). It is now built `CONCURRENTLY` by the step that
//! `thumbnails migrate` runs after the migrations (`store::stamps` in the
//! service), and this migration only keeps its name in the record; `down`
//! still drops the index.

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
    async fn up(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
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
