//! Schema migrations for the thumbnails service.
//!
//! The schema is SkyPortal-compatible: every statement tolerates a database
//! where SkyPortal already created `objs`, `thumbnails` and the
//! `thumbnail_types` enum, and never drops or alters what SkyPortal owns.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_schema;
mod m20261125_000002_outbox;
mod m20261204_000001_feed;
mod m20261204_000003_remote_attempts;
mod m20261205_000001_feed_definer;
mod m20261205_000002_event_order;
mod m20261207_000001_preview_index;

/// The index on `objs (created_at, id)` the preview's list page reads by;
/// building it needs the owner's rights on `objs`.
pub use m20261207_000001_preview_index::INDEX as PREVIEW_INDEX;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_schema::Migration),
            Box::new(m20261125_000002_outbox::Migration),
            Box::new(m20261204_000001_feed::Migration),
            Box::new(m20261204_000003_remote_attempts::Migration),
            Box::new(m20261205_000001_feed_definer::Migration),
            Box::new(m20261205_000002_event_order::Migration),
            Box::new(m20261207_000001_preview_index::Migration),
        ]
    }
}
