//! `thumbnails_event_order`: the newest order (`seq`) of the position
//! events applied to each object, so that an older `obj.updated` handled
//! late (a slow PS1 lookup) cannot write its older position's URLs over a
//! newer one's. The service's own table; rows for deleted objects are
//! harmless (an object id that comes back starts from its new events).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000002_event_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE IF NOT EXISTS thumbnails_event_order (
                   obj_id varchar PRIMARY KEY,
                   seq bigint NOT NULL
                 )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS thumbnails_event_order")
            .await?;
        Ok(())
    }
}
