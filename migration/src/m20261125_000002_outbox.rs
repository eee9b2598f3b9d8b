//! `thumbnail_outbox`: `thumbnail.stored` events written in the same
//! transaction as the thumbnail row they announce, deleted once the broker
//! has confirmed them. Owned by this service (not part of SkyPortal).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000002_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE IF NOT EXISTS thumbnail_outbox (
                   id bigserial PRIMARY KEY,
                   routing_key varchar NOT NULL,
                   body text NOT NULL,
                   created_at timestamp without time zone NOT NULL
                 )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS thumbnail_outbox")
            .await?;
        Ok(())
    }
}
