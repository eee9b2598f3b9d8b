//! `thumbnail_remote_attempts`: when the grayscale pass may fetch a row's
//! image again after a failure. Owned by this service: SkyPortal's
//! `thumbnails` table is not altered (no column, and no foreign key, whose
//! triggers would live on `thumbnails`); rows of deleted thumbnails are
//! removed by the pass itself.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000003_remote_attempts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE IF NOT EXISTS thumbnail_remote_attempts (
                   thumbnail_id integer PRIMARY KEY,
                   url varchar NOT NULL,
                   attempts integer NOT NULL,
                   next_attempt_at timestamp without time zone NOT NULL,
                   last_error varchar NOT NULL,
                   updated_at timestamp without time zone NOT NULL
                 )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS thumbnail_remote_attempts")
            .await?;
        Ok(())
    }
}
