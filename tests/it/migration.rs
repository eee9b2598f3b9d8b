//! The migration against empty and SkyPortal-shaped databases.

use sea_orm::ConnectionTrait;

use crate::helpers::*;

#[tokio::test]
async fn migrate_is_idempotent_and_dedupes_skyportal_tables() {
    let db = TestDb::empty().await;
    // A SkyPortal-like database: more columns, no unique constraint, duplicates.
    db.db
        .execute_unprepared(
            "CREATE TYPE thumbnail_types AS ENUM ('new','ref','sub','sdss','dr8','ls','ps1','sm','hst','chandra','jwst','new_gz','ref_gz','sub_gz');
             CREATE TABLE objs (id varchar PRIMARY KEY, ra float8, dec float8, is_roid boolean DEFAULT false,
               internal_key varchar NOT NULL, created_at timestamp NOT NULL, modified timestamp NOT NULL,
               redshift float8, origin varchar);
             CREATE TABLE thumbnails (id serial PRIMARY KEY, created_at timestamp NOT NULL, modified timestamp NOT NULL,
               type thumbnail_types, file_uri varchar, public_url varchar, origin varchar, survey varchar,
               is_grayscale boolean, obj_id varchar NOT NULL REFERENCES objs(id) ON DELETE CASCADE);
             INSERT INTO objs VALUES ('a', 1, 2, false, 'k', now(), now(), 0.1, 'ZTF');
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id) VALUES
               (now(), now(), 'ls', 'first', 'a'), (now(), now(), 'ls', 'second', 'a'),
               (now(), now(), 'ls', 'third', 'a'), (now(), now(), 'sdss', 'only', 'a');",
        )
        .await
        .expect("seed SkyPortal tables");
    thumbnails::store::migrate(&db.db)
        .await
        .expect("first migrate");
    thumbnails::store::migrate(&db.db)
        .await
        .expect("second migrate");
    assert_eq!(
        db.thumbnails().await,
        vec![
            ("a".into(), "ls".into(), Some("first".into())),
            ("a".into(), "sdss".into(), Some("only".into())),
        ]
    );
    // SkyPortal's own columns are untouched.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE origin = 'ZTF' AND redshift = 0.1")
            .await,
        1
    );
    // The unique index now holds.
    let dup = db
        .db
        .execute_unprepared(
            "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id) VALUES (now(), now(), 'ls', 'x', 'a')",
        )
        .await;
    assert!(dup.is_err(), "duplicate (obj_id, type) must be refused");
}

#[tokio::test]
async fn migrate_creates_the_schema_on_an_empty_database_concurrently() {
    let db = TestDb::empty().await;
    let (a, b) = tokio::join!(
        thumbnails::store::migrate(&db.db),
        thumbnails::store::migrate(&db.db)
    );
    a.expect("migrate a");
    b.expect("migrate b");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'thumbnails_obj_id_type_key'"
        )
        .await,
        1
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'thumbnail_types'").await,
        14
    );
}
