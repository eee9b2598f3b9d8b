//! The feed's trigger functions run with their owner's privileges.
//!
//! A trigger function runs as the role whose statement fired it. SkyPortal's
//! role writes `objs` but has no privilege on the service's
//! `thumbnails_feed_state` and `thumbnails_feed_outbox` (owned by the role
//! that migrated), so every `INSERT INTO objs` failed with `permission
//! denied for table thumbnails_feed_state`, even with the feed off. As
//! `SECURITY DEFINER` the functions run as the role that owns them (the
//! service's), with `search_path` fixed to the schema they were made in
//! (and `pg_temp` last), so the inserting role cannot redirect the names
//! they use. They are trigger functions: nobody can call them directly.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000001_feed_definer"
    }
}

const UP: &str = r#"
DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION thumbnails_feed_on_insert() SECURITY DEFINER SET search_path = %I, pg_temp',
                 current_schema());
  EXECUTE format('ALTER FUNCTION thumbnails_feed_on_update() SECURITY DEFINER SET search_path = %I, pg_temp',
                 current_schema());
END $$;
"#;

const DOWN: &str = r#"
ALTER FUNCTION thumbnails_feed_on_insert() SECURITY INVOKER RESET search_path;
ALTER FUNCTION thumbnails_feed_on_update() SECURITY INVOKER RESET search_path;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
