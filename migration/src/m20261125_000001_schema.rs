//! `thumbnail_types`, `objs` and `thumbnails` (their unique keys come from
//! the app's concurrent step, src/store/stamps.rs).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000001_schema"
    }
}

/// SkyPortal's enum values, in its order.
const TYPES: [&str; 14] = [
    "new", "ref", "sub", "sdss", "dr8", "ls", "ps1", "sm", "hst", "chandra", "jwst", "new_gz",
    "ref_gz", "sub_gz",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let quoted: Vec<String> = TYPES.iter().map(|t| format!("'{t}'")).collect();
        db.execute_unprepared(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'thumbnail_types') THEN
                 CREATE TYPE thumbnail_types AS ENUM ({});
               END IF;
             END $$;",
            quoted.join(", ")
        ))
        .await?;
        // An older SkyPortal enum may lack recent values: add them, never remove.
        for t in TYPES {
            db.execute_unprepared(&format!(
                "ALTER TYPE thumbnail_types ADD VALUE IF NOT EXISTS '{t}'"
            ))
            .await?;
        }
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS objs (
               id varchar PRIMARY KEY,
               ra double precision,
               dec double precision,
               is_roid boolean DEFAULT false,
               internal_key varchar NOT NULL,
               created_at timestamp without time zone NOT NULL,
               modified timestamp without time zone NOT NULL
             )",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS thumbnails (
               id serial PRIMARY KEY,
               created_at timestamp without time zone NOT NULL,
               modified timestamp without time zone NOT NULL,
               type thumbnail_types,
               file_uri varchar,
               public_url varchar,
               origin varchar,
               survey varchar,
               is_grayscale boolean,
               obj_id varchar NOT NULL REFERENCES objs(id) ON DELETE CASCADE
             )",
        )
        .await?;
        // The unique keys (per survey since issue 11) are not made here:
        // de-duplicating a SkyPortal table of millions of rows and building
        // its indexes must not hold one transaction, and `CREATE INDEX
        // CONCURRENTLY` cannot run in one. `thumbnails migrate` does it after
        // the migrations (src/store/stamps.rs). Databases migrated before
        // keep this migration's former `thumbnails_obj_id_type_key` until
        // that step replaces it.
        // replay --missing looks for failed PS1 lookups without a scan.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS thumbnails_ps1_unavailable_idx
               ON thumbnails (obj_id)
               WHERE type = 'ps1' AND public_url = '/static/images/currently_unavailable.png'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Only undo what this migration can own without touching SkyPortal's
        // data: the indexes. Tables and the enum may predate us.
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS thumbnails_ps1_unavailable_idx")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS thumbnails_obj_id_type_key")
            .await?;
        Ok(())
    }
}
