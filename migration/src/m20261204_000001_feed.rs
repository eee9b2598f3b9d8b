//! The database feed: triggers on SkyPortal's `objs` write outbox rows
//! naming the objects inserted (one row per INSERT statement, its ids in an
//! array read from the transition table: a bulk insert pays one row, not
//! one per object) and the objects whose `ra`, `dec` or `is_roid` changed
//! (row-level, filtered by `WHEN` before any function runs), and wake the
//! relay with `NOTIFY thumbnails_feed`. Everything is named `thumbnails_feed_*`; the
//! triggers write nothing unless `thumbnails_feed_state.enabled` (set by the
//! service at start from `feed.enabled`), so a deployment whose upstream
//! publishes collects no rows. `down()` removes all of it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_feed"
    }
}

const UP: &str = r#"
CREATE TABLE IF NOT EXISTS thumbnails_feed_outbox (
  id bigserial PRIMARY KEY,
  obj_ids varchar[] NOT NULL CHECK (cardinality(obj_ids) > 0),
  kind varchar NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS thumbnails_feed_state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  enabled boolean NOT NULL
);
INSERT INTO thumbnails_feed_state (singleton, enabled) VALUES (true, false)
  ON CONFLICT (singleton) DO NOTHING;

CREATE OR REPLACE FUNCTION thumbnails_feed_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- The worker's own inserts (objects it is making rows for already) set
  -- thumbnails.feed_skip for their transaction: nothing to announce.
  IF (SELECT enabled FROM thumbnails_feed_state)
     AND current_setting('thumbnails.feed_skip', true) IS DISTINCT FROM 'on' THEN
    INSERT INTO thumbnails_feed_outbox (obj_ids, kind)
      SELECT array_agg(id), 'created' FROM thumbnails_feed_new
      WHERE ra IS NOT NULL AND dec IS NOT NULL
      HAVING count(*) > 0;
    IF FOUND THEN
      PERFORM pg_notify('thumbnails_feed', '');
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION thumbnails_feed_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT enabled FROM thumbnails_feed_state) THEN
    INSERT INTO thumbnails_feed_outbox (obj_ids, kind) VALUES (ARRAY[NEW.id], 'updated');
    -- Identical notifications of one transaction are delivered once.
    PERFORM pg_notify('thumbnails_feed', '');
  END IF;
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS thumbnails_feed_insert ON objs;
CREATE TRIGGER thumbnails_feed_insert
  AFTER INSERT ON objs
  REFERENCING NEW TABLE AS thumbnails_feed_new
  FOR EACH STATEMENT EXECUTE FUNCTION thumbnails_feed_on_insert();

DROP TRIGGER IF EXISTS thumbnails_feed_update ON objs;
CREATE TRIGGER thumbnails_feed_update
  AFTER UPDATE OF ra, dec, is_roid ON objs
  FOR EACH ROW
  WHEN (NEW.ra IS NOT NULL AND NEW.dec IS NOT NULL
        AND (OLD.ra IS DISTINCT FROM NEW.ra OR OLD.dec IS DISTINCT FROM NEW.dec
             OR OLD.is_roid IS DISTINCT FROM NEW.is_roid))
  EXECUTE FUNCTION thumbnails_feed_on_update();
"#;

/// Also the README's recipe for removing the feed by hand.
const DOWN: &str = r#"
DROP TRIGGER IF EXISTS thumbnails_feed_insert ON objs;
DROP TRIGGER IF EXISTS thumbnails_feed_update ON objs;
DROP FUNCTION IF EXISTS thumbnails_feed_on_insert();
DROP FUNCTION IF EXISTS thumbnails_feed_on_update();
DROP TABLE IF EXISTS thumbnails_feed_outbox;
DROP TABLE IF EXISTS thumbnails_feed_state;
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
