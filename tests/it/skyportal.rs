//! Dropping into a SkyPortal database as an operator would (issue 15):
//! SkyPortal's role owns its tables and the service runs as its own role;
//! deleted objects stay deleted; older schemas are refused with one line;
//! `migrate` switches the feed's triggers.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use thumbnails::bus::ObjCreated;

use crate::cli::service;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

/// SkyPortal's own DDL for the tables the service shares (the columns
/// SkyPortal has beyond them included, as in a real database).
const SKYPORTAL_DDL: &str = "
CREATE TYPE thumbnail_types AS ENUM ('new', 'ref', 'sub', 'sdss', 'dr8', 'ls', 'ps1',
  'sm', 'hst', 'chandra', 'jwst', 'new_gz', 'ref_gz', 'sub_gz');
CREATE TABLE objs (
  id varchar PRIMARY KEY,
  ra double precision,
  dec double precision,
  is_roid boolean DEFAULT false,
  internal_key varchar NOT NULL,
  score double precision,
  created_at timestamp without time zone NOT NULL,
  modified timestamp without time zone NOT NULL
);
CREATE TABLE thumbnails (
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
);";

/// Login roles made for one test (roles are cluster-wide: unique names),
/// dropped on drop, after the test's database (declare before it).
struct Roles(Vec<String>);

impl Roles {
    async fn create(names: &[&str]) -> Self {
        let admin = Database::connect(PG_ADMIN).await.expect("admin");
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let mut made = Vec::new();
        for n in names {
            let role = format!("{n}_{suffix}");
            admin
                .execute_unprepared(&format!("CREATE ROLE {role} LOGIN"))
                .await
                .expect("create role");
            made.push(role);
        }
        Self(made)
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let roles = self.0.clone();
        clean_up_in_drop(async move {
            if let Ok(admin) = Database::connect(PG_ADMIN).await {
                for r in roles {
                    let _ = admin
                        .execute_unprepared(&format!("DROP ROLE IF EXISTS {r}"))
                        .await;
                }
            }
        });
    }
}

/// The test database's URL as `role`.
fn url_as(db: &TestDb, role: &str) -> String {
    format!("postgres://{role}@127.0.0.1:5432/{}", db.name)
}

async fn connect_as(db: &TestDb, role: &str) -> DatabaseConnection {
    Database::connect(url_as(db, role))
        .await
        .expect("connect as role")
}

/// An empty database where `owner` made SkyPortal's tables; `others` may
/// use the schema (PostgreSQL 15 gives PUBLIC no CREATE on it).
async fn skyportal_db(owner: &str, others: &[&str]) -> TestDb {
    let db = TestDb::empty().await;
    for role in std::iter::once(&owner).chain(others) {
        db.db
            .execute_unprepared(&format!("GRANT USAGE, CREATE ON SCHEMA public TO {role}"))
            .await
            .expect("grant schema");
    }
    connect_as(&db, owner)
        .await
        .execute_unprepared(SKYPORTAL_DDL)
        .await
        .expect("SkyPortal's DDL");
    db
}

async fn migrate_as(url: &str, bus: &TestBus, feed: bool) -> std::process::Output {
    service("migrate", url, bus, free_port())
        .env("THUMBNAILS_FEED__ENABLED", feed.to_string())
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run migrate")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// A run that failed with one line on stderr; the line.
fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// The table rights a service role needs on SkyPortal's tables.
async fn grant_tables(db: &TestDb, role: &str) {
    db.db
        .execute_unprepared(&format!(
            "GRANT SELECT, INSERT, UPDATE, TRIGGER ON objs TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON thumbnails TO {role};"
        ))
        .await
        .expect("table grants");
}

async fn insert_obj(conn: &DatabaseConnection, id: &str, ra: f64) {
    conn.execute_unprepared(&format!(
        "INSERT INTO objs (id, ra, dec, internal_key, created_at, modified)
         VALUES ('{id}', {ra}, 20.0, 'k-{id}', now(), now())"
    ))
    .await
    .unwrap_or_else(|e| panic!("SkyPortal's INSERT of {id}: {e}"));
}

#[tokio::test]
async fn skyportal_keeps_writing_objs_when_the_service_migrates_and_runs_as_its_own_role() {
    let roles = Roles::create(&["skyportal", "thumbnails_svc"]).await;
    let (sp, svc) = (roles.0[0].as_str(), roles.0[1].as_str());
    let db = skyportal_db(sp, &[svc]).await;
    let bus = TestBus::new().await;
    // The one grant the README asks of SkyPortal's side.
    db.db
        .execute_unprepared(&format!("GRANT {sp} TO {svc}"))
        .await
        .expect("grant membership");
    let out = migrate_as(&url_as(&db, svc), &bus, true).await;
    assert!(
        out.status.success(),
        "migrate as the service: {}",
        stderr(&out)
    );
    // migrate switched the feed on: no relay has run yet.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails_feed_state WHERE enabled")
            .await,
        1
    );

    let skyportal = connect_as(&db, sp).await;
    insert_obj(&skyportal, "ZTF-role-1", 10.0).await;
    skyportal
        .execute_unprepared("UPDATE objs SET ra = 11.0 WHERE id = 'ZTF-role-1'")
        .await
        .expect("SkyPortal's UPDATE with the feed on");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails_feed_outbox")
            .await,
        2,
        "the insert and the move are recorded for the relay"
    );

    // The service runs as its role and gives SkyPortal's object its rows.
    let port = free_port();
    let storage = tempfile::tempdir().expect("tempdir");
    let mut child = service("run", &url_as(&db, svc), &bus, port)
        .env("THUMBNAILS_STORAGE__ROOT", storage.path())
        .env("THUMBNAILS_GRAYSCALE__ENABLED", "false")
        .spawn()
        .expect("spawn run");
    wait_healthy(port).await;
    eventually("rows for SkyPortal's object", WAIT, || async {
        (db.scalar_i64(
            "SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-role-1' AND public_url LIKE '%ra=11.0%'",
        )
        .await
            == 2)
            .then_some(())
    })
    .await;
    assert!(sigterm(&mut child).await.success());

    // Feed off: SkyPortal's writes still work and record nothing.
    let out = migrate_as(&url_as(&db, svc), &bus, false).await;
    assert!(out.status.success(), "migrate, feed off: {}", stderr(&out));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails_feed_state WHERE enabled")
            .await,
        0
    );
    insert_obj(&skyportal, "ZTF-role-2", 12.0).await;
    skyportal
        .execute_unprepared("UPDATE objs SET dec = 21.0 WHERE id = 'ZTF-role-2'")
        .await
        .expect("SkyPortal's UPDATE with the feed off");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails_feed_outbox")
            .await,
        0
    );
    drop(skyportal);
    drop(db);
    drop(roles);
}

#[tokio::test]
async fn migrate_without_the_grants_stops_with_one_line_naming_the_grant() {
    let roles = Roles::create(&["skyportal", "thumbnails_svc"]).await;
    let (sp, svc) = (roles.0[0].as_str(), roles.0[1].as_str());
    let db = skyportal_db(sp, &[svc]).await;
    let bus = TestBus::new().await;
    let out = migrate_as(&url_as(&db, svc), &bus, true).await;
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!(
            "GRANT SELECT, INSERT, UPDATE, TRIGGER ON objs TO \"{svc}\""
        )),
        "{err}"
    );
    // With the table grants but not the owner's rights, the index step is named.
    grant_tables(&db, svc).await;
    let out = migrate_as(&url_as(&db, svc), &bus, true).await;
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!("GRANT \"{sp}\" TO \"{svc}\"")),
        "{err}"
    );
    // Nothing of the service's was made.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_class WHERE relname LIKE 'thumbnails_feed%' OR relname = 'seaql_migrations'")
            .await,
        0
    );
    drop(db);
    drop(roles);
}

#[tokio::test]
async fn a_deployment_migrated_before_the_preview_index_is_told_the_grant_it_needs() {
    let roles = Roles::create(&["skyportal", "thumbnails_svc"]).await;
    let (sp, svc) = (roles.0[0].as_str(), roles.0[1].as_str());
    let db = skyportal_db(sp, &[svc]).await;
    let bus = TestBus::new().await;
    grant_tables(&db, svc).await;
    // Migrated by the owner before this version: everything but the
    // preview's index on objs.
    let out = migrate_as(&url_as(&db, sp), &bus, true).await;
    assert!(out.status.success(), "{}", stderr(&out));
    connect_as(&db, sp)
        .await
        .execute_unprepared(&format!(
            "DROP INDEX {index};
             DELETE FROM seaql_migrations WHERE version = 'm20261207_000001_preview_index';",
            index = migration::PREVIEW_INDEX
        ))
        .await
        .expect("undo the preview index");
    let out = migrate_as(&url_as(&db, svc), &bus, true).await;
    let err = one_line_error(&out);
    assert!(
        err.contains("owner of objs")
            && err.contains(migration::PREVIEW_INDEX)
            && err.contains(&format!("GRANT \"{sp}\" TO \"{svc}\"")),
        "{err}"
    );
    // The owner builds it; the service's check passes from then on.
    let out = migrate_as(&url_as(&db, sp), &bus, true).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let built = db
        .scalar_i64(&format!(
            "SELECT count(*) FROM pg_indexes WHERE indexname = '{}'",
            migration::PREVIEW_INDEX
        ))
        .await;
    assert_eq!(built, 1);
    drop(db);
    drop(roles);
}

#[tokio::test]
async fn an_older_skyportal_schema_is_refused_at_migrate_and_at_start_with_one_line() {
    let bus = TestBus::new().await;
    // No survey column (SkyPortal before per-survey stamps).
    let db = TestDb::empty().await;
    db.db.execute_unprepared(SKYPORTAL_DDL).await.expect("DDL");
    db.db
        .execute_unprepared("ALTER TABLE thumbnails DROP COLUMN survey")
        .await
        .expect("drop survey");
    let out = migrate_as(&db.url, &bus, true).await;
    let err = one_line_error(&out);
    assert!(err.contains("thumbnails.survey is missing"), "{err}");
    assert!(err.contains("the oldest supported is"), "{err}");

    // is_grayscale NOT NULL (older SkyPortal): refused, not dead-lettering later.
    let db = TestDb::empty().await;
    db.db.execute_unprepared(SKYPORTAL_DDL).await.expect("DDL");
    db.db
        .execute_unprepared("ALTER TABLE thumbnails ALTER COLUMN is_grayscale SET NOT NULL")
        .await
        .expect("not null");
    let out = migrate_as(&db.url, &bus, true).await;
    let err = one_line_error(&out);
    assert!(err.contains("thumbnails.is_grayscale is NOT NULL"), "{err}");

    // A database that became older after migrating is refused at start.
    db.db
        .execute_unprepared("ALTER TABLE thumbnails ALTER COLUMN is_grayscale DROP NOT NULL")
        .await
        .expect("nullable");
    let out = migrate_as(&db.url, &bus, true).await;
    assert!(out.status.success(), "{}", stderr(&out));
    db.db
        .execute_unprepared("ALTER TABLE thumbnails ALTER COLUMN is_grayscale SET NOT NULL")
        .await
        .expect("not null again");
    let out = service("worker", &db.url, &bus, free_port())
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run worker");
    let err = one_line_error(&out);
    assert!(err.contains("thumbnails.is_grayscale is NOT NULL"), "{err}");
}

#[tokio::test]
async fn objects_deleted_while_their_database_events_wait_stay_deleted() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let config = bus.config(&db, "");
    // Queued from the database (feed, sweep, replay all send this form)...
    let gone: Vec<String> = (0..50).map(|i| format!("ZTF-gone-{i:02}")).collect();
    for id in &gone {
        db.add_obj(id).await;
    }
    let bodies: Vec<Vec<u8>> = gone
        .iter()
        .map(|id| {
            ObjCreated::existing_body(id, 10.0, 20.0, false, None, false, None).expect("body")
        })
        .collect();
    bus.publish_many(&bodies).await;
    // ... and an object still there, and an upstream publisher's new one.
    db.add_obj("ZTF-kept").await;
    bus.publish(
        &ObjCreated::existing_body("ZTF-kept", 10.0, 20.0, false, None, false, None).expect("body"),
    )
    .await;
    bus.publish(&event("ZTF-upstream", 12.0, 5.0)).await;
    db.db
        .execute_unprepared("DELETE FROM objs WHERE id LIKE 'ZTF-gone-%'")
        .await
        .expect("SkyPortal deletes");

    let worker = RunningWorker::start(&config).await;
    eventually("the kept and the upstream objects' rows", WAIT, || async {
        (db.scalar_i64(
            "SELECT count(*) FROM thumbnails WHERE obj_id IN ('ZTF-kept', 'ZTF-upstream')",
        )
        .await
            == 6)
            .then_some(())
    })
    .await;
    bus.delivered().await;
    worker.stop().await;

    assert_eq!(bus.ready_stable().await, 0, "every event was acked");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE id LIKE 'ZTF-gone-%'")
            .await,
        0,
        "no deleted object came back"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails WHERE obj_id LIKE 'ZTF-gone-%'")
            .await,
        0
    );
    assert_eq!(
        bus.queue_len(&bus.topology.dead_queue()).await,
        0,
        "nothing dead-lettered"
    );
    bus.delete().await;
}
