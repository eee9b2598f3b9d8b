//! The migration against empty and SkyPortal-shaped databases.

use sea_orm::ConnectionTrait;

use crate::helpers::*;

const SKYPORTAL_TABLES: &str = "CREATE TYPE thumbnail_types AS ENUM ('new','ref','sub','sdss','dr8','ls','ps1','sm','hst','chandra','jwst','new_gz','ref_gz','sub_gz');
     CREATE TABLE objs (id varchar PRIMARY KEY, ra float8, dec float8, is_roid boolean DEFAULT false,
       internal_key varchar NOT NULL, created_at timestamp NOT NULL, modified timestamp NOT NULL,
       redshift float8, origin varchar);
     CREATE TABLE thumbnails (id serial PRIMARY KEY, created_at timestamp NOT NULL, modified timestamp NOT NULL,
       type thumbnail_types, file_uri varchar, public_url varchar, origin varchar, survey varchar,
       is_grayscale boolean, obj_id varchar NOT NULL REFERENCES objs(id) ON DELETE CASCADE);
     INSERT INTO objs VALUES ('a', 1, 2, false, 'k', now(), now(), 0.1, 'ZTF');";

/// `(obj_id, type, survey, public_url)` of every row, sorted.
async fn rows(db: &TestDb) -> Vec<(String, String, Option<String>, Option<String>)> {
    db.db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT obj_id, type::text, survey, public_url FROM thumbnails
             ORDER BY obj_id, type::text, survey NULLS FIRST"
                .to_owned(),
        ))
        .await
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).expect("obj_id"),
                r.try_get_by_index(1).expect("type"),
                r.try_get_by_index(2).expect("survey"),
                r.try_get_by_index(3).expect("public_url"),
            )
        })
        .collect()
}

async fn valid_index(db: &TestDb, name: &str) -> i64 {
    db.scalar_i64(&format!(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relname = '{name}' AND i.indisvalid"
    ))
    .await
}

fn s(v: &str) -> Option<String> {
    Some(v.into())
}

#[tokio::test]
async fn migrate_is_idempotent_and_keeps_the_newest_row_per_survey() {
    let db = TestDb::empty().await;
    // A SkyPortal-like database: more columns, no unique constraint,
    // duplicates, stamps of two surveys, a survey in mixed case.
    db.db
        .execute_unprepared(&format!(
            "{SKYPORTAL_TABLES}
             INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id) VALUES
               ('2020-01-01', now(), 'ls', 'first', NULL, 'a'),
               ('2022-01-01', now(), 'ls', 'newest', NULL, 'a'),
               ('2021-01-01', now(), 'ls', 'second', NULL, 'a'),
               ('2020-01-01', now(), 'sdss', 'only', NULL, 'a'),
               ('2020-01-01', now(), 'new', 'ztf-old', 'ZTF', 'a'),
               ('2021-01-01', now(), 'new', 'ztf-new', 'Ztf', 'a'),
               ('2021-01-01', now(), 'new', 'lsst', 'LSST', 'a'),
               ('2021-01-01', now(), 'new', 'archival', NULL, 'a'),
               ('2021-01-01', now(), 'ref', 'blank', '', 'a');"
        ))
        .await
        .expect("seed SkyPortal tables");
    thumbnails::store::migrate(&db.db)
        .await
        .expect("first migrate");
    thumbnails::store::migrate(&db.db)
        .await
        .expect("second migrate");
    assert_eq!(
        rows(&db).await,
        vec![
            ("a".into(), "new".into(), None, s("archival")),
            ("a".into(), "new".into(), s("LSST"), s("lsst")),
            ("a".into(), "new".into(), s("ZTF"), s("ztf-new")),
            ("a".into(), "ref".into(), None, s("blank")),
            ("a".into(), "sdss".into(), None, s("only")),
            ("a".into(), "ls".into(), None, s("newest")),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // SkyPortal's own columns are untouched.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE origin = 'ZTF' AND redshift = 0.1")
            .await,
        1
    );
    // The indexes hold: no second archival row, no second ZTF stamp; a new
    // survey is welcome.
    for (survey, refused) in [("NULL", true), ("'ZTF'", true), ("'WFST'", false)] {
        let insert = db
            .db
            .execute_unprepared(&format!(
                "INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
                 VALUES (now(), now(), 'new', 'x', {survey}, 'a')"
            ))
            .await;
        assert_eq!(insert.is_err(), refused, "survey {survey}: {insert:?}");
    }
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
        valid_index(&db, "thumbnails_obj_id_type_archival_key").await,
        1
    );
    assert_eq!(
        valid_index(&db, "thumbnails_obj_id_type_survey_key").await,
        1
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'thumbnails_obj_id_type_key'"
        )
        .await,
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'thumbnail_types'").await,
        14
    );
}

#[tokio::test]
async fn a_database_migrated_before_stamps_swaps_its_index() {
    let db = TestDb::new().await;
    // As the previous release left it: the (obj_id, type) index only.
    db.db
        .execute_unprepared(
            "DROP INDEX thumbnails_obj_id_type_archival_key;
             DROP INDEX thumbnails_obj_id_type_survey_key;
             CREATE UNIQUE INDEX thumbnails_obj_id_type_key ON thumbnails (obj_id, type);
             INSERT INTO objs VALUES ('a', 1, 2, false, 'k', now(), now());
             INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
               VALUES (now(), now(), 'new', 'x', 'ztf', 'a');",
        )
        .await
        .expect("previous release's schema");
    thumbnails::store::migrate(&db.db).await.expect("migrate");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'thumbnails_obj_id_type_key'"
        )
        .await,
        0
    );
    assert_eq!(
        valid_index(&db, "thumbnails_obj_id_type_archival_key").await,
        1
    );
    assert_eq!(
        valid_index(&db, "thumbnails_obj_id_type_survey_key").await,
        1
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails WHERE survey = 'ZTF'")
            .await,
        1,
        "survey upper-cased"
    );
    // A second survey's stamp of the same type now has room.
    db.db
        .execute_unprepared(
            "INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
             VALUES (now(), now(), 'new', 'y', 'LSST', 'a')",
        )
        .await
        .expect("second survey");
}

#[tokio::test]
async fn an_index_left_invalid_by_an_interrupted_build_is_rebuilt() {
    let db = TestDb::empty().await;
    db.db
        .execute_unprepared(&format!(
            "{SKYPORTAL_TABLES}
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id) VALUES
               ('2020-01-01', now(), 'ls', 'old', 'a'), ('2021-01-01', now(), 'ls', 'new', 'a');"
        ))
        .await
        .expect("seed");
    // A concurrent build that failed (here on the duplicate) leaves an
    // invalid index behind, as an interrupted one does.
    let failed = db
        .db
        .execute_unprepared(
            "CREATE UNIQUE INDEX CONCURRENTLY thumbnails_obj_id_type_archival_key
               ON thumbnails (obj_id, type) WHERE survey IS NULL",
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_indexes WHERE indexname = 'thumbnails_obj_id_type_archival_key'")
            .await,
        1,
        "the invalid index exists"
    );
    assert_eq!(
        valid_index(&db, "thumbnails_obj_id_type_archival_key").await,
        0
    );
    thumbnails::store::migrate(&db.db).await.expect("migrate");
    assert_eq!(
        valid_index(&db, "thumbnails_obj_id_type_archival_key").await,
        1
    );
    assert_eq!(
        db.thumbnails().await,
        vec![("a".into(), "ls".into(), Some("new".into()))]
    );
}

#[tokio::test]
async fn the_preview_index_is_built_while_skyportal_keeps_inserting_objects() {
    use sea_orm::TransactionTrait;
    let db = TestDb::empty().await;
    db.db
        .execute_unprepared(SKYPORTAL_TABLES)
        .await
        .expect("seed");
    thumbnails::store::migrate(&db.db).await.expect("migrate");
    // A deployment migrated before the preview index.
    db.db
        .execute_unprepared(&format!("DROP INDEX {}", migration::PREVIEW_INDEX))
        .await
        .expect("drop the preview index");
    // SkyPortal inside a transaction that has inserted an object: any build
    // of an index on objs waits for it to end.
    let skyportal = sea_orm::Database::connect(&db.url).await.expect("connect");
    let open = skyportal.begin().await.expect("begin");
    open.execute_unprepared(
        "INSERT INTO objs (id, internal_key, created_at, modified) VALUES ('open', 'k1', now(), now())",
    )
    .await
    .expect("insert in the open transaction");
    let migrating = tokio::spawn({
        let db = db.db.clone();
        async move { thumbnails::store::migrate(&db).await }
    });
    eventually(
        "the preview index build to start",
        std::time::Duration::from_secs(30),
        || async {
            (db.scalar_i64(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'CREATE INDEX CONCURRENTLY%ON objs%'",
            )
            .await
                > 0)
            .then_some(())
        },
    )
    .await;
    // While the build waits, another object goes in at once: a plain
    // CREATE INDEX would hold every insert behind its SHARE lock.
    let other = sea_orm::Database::connect(&db.url).await.expect("connect");
    other
        .execute_unprepared(
            "SET statement_timeout = '5s';
             INSERT INTO objs (id, internal_key, created_at, modified) VALUES ('during', 'k2', now(), now())",
        )
        .await
        .expect("an insert during the build is not held");
    assert!(
        !migrating.is_finished(),
        "the build waits for the open transaction"
    );
    open.commit().await.expect("commit");
    migrating
        .await
        .expect("join")
        .expect("migrate after the transaction ended");
    assert_eq!(valid_index(&db, migration::PREVIEW_INDEX).await, 1);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, 3);
}
