//! The database feed and the reconcile sweep against the real PostgreSQL
//! and RabbitMQ: SkyPortal writes plain SQL, nobody publishes.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::Value;
use testkit::ps1::image_src;
use thumbnails::bus::PublisherConnection;
use thumbnails::config::Config;
use thumbnails::feed::{self, Relay};
use thumbnails::surveys::CURRENTLY_UNAVAILABLE;
use thumbnails::worker::reconcile::Sweeper;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::ops::{ls_url, sdss_url};

const WAIT: Duration = Duration::from_secs(60);

/// A feed relay running in this process until [`RunningFeed::stop`].
struct RunningFeed {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), feed::FeedError>>,
}

impl RunningFeed {
    /// Starts the relay and waits until it has switched the triggers on.
    async fn start(config: &Config, db: &TestDb) -> Self {
        let shutdown = CancellationToken::new();
        let conn = thumbnails::store::connect(&config.database.url, 4)
            .await
            .expect("connect");
        let (config, s) = (config.clone(), shutdown.clone());
        let task = tokio::spawn(async move { feed::run(&config, conn, s).await });
        crate::running::feed_enabled(db, WAIT).await;
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("feed stops within a minute")
            .expect("feed task joins")
            .expect("feed exits cleanly");
    }
}

/// SkyPortal's way: one plain INSERT, many objects, no event.
async fn insert_objs(db: &TestDb, values: &str) {
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified) VALUES {values}"
        ))
        .await
        .expect("insert objs");
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.scalar_i64(sql).await
}

async fn wait_count(db: &TestDb, what: &str, sql: &str, want: i64) {
    eventually(what, WAIT, || async {
        (count(db, sql).await == want).then_some(())
    })
    .await;
}

async fn wait_outbox_empty(db: &TestDb) {
    let outbox = "SELECT count(*) FROM thumbnails_feed_outbox";
    wait_count(db, "an empty outbox", outbox, 0).await;
}

fn url_of(rows: &[(String, String, Option<String>)], obj: &str, ttype: &str) -> Option<String> {
    rows.iter()
        .find(|r| r.0 == obj && r.1 == ttype)
        .and_then(|r| r.2.clone())
}

#[tokio::test]
async fn a_plain_sql_insert_gets_its_three_rows() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let mut config = bus.config(&db, &ps1.url);
    // No poll in the test's lifetime: only the NOTIFY can wake the relay.
    config.feed.poll_interval_s = 3600.0;
    let worker = RunningWorker::start(&config).await;
    let relay = RunningFeed::start(&config, &db).await;

    insert_objs(
        &db,
        "('ZTF1', 10.5, -5.25, false, 'k1', now(), now()),
         ('ZTF2', 20.0, 1e-05, NULL, 'k2', now(), now()),
         ('nopos', NULL, NULL, false, 'k3', now(), now()),
         ('roid', 30.0, 3.0, true, 'k4', now(), now())",
    )
    .await;
    wait_count(&db, "six rows", "SELECT count(*) FROM thumbnails", 6).await;
    wait_outbox_empty(&db).await;
    bus.delivered().await;
    let rows = db.thumbnails().await;
    assert_eq!(
        url_of(&rows, "ZTF1", "sdss"),
        Some(sdss_url("10.5", "-5.25"))
    );
    assert_eq!(url_of(&rows, "ZTF1", "ls"), Some(ls_url("10.5", "-5.25")));
    assert_eq!(
        url_of(&rows, "ZTF2", "ps1"),
        Some(format!("https:{}", image_src("20.0 1e-05")))
    );
    assert!(rows.iter().all(|r| r.0.starts_with("ZTF")), "{rows:?}");
    // Nothing was sent that the worker would refuse.
    assert!(bus.drain(&bus.topology.dead_queue()).await.is_empty());

    relay.stop().await;
    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn skyportals_brute_force_delete_is_healed_by_the_sweep() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let mut config = bus.config(&db, &ps1.url);
    config.feed.enabled = false;
    config.reconcile.interval_s = 1;
    config.reconcile.batch = 2; // several pages
    insert_objs(
        &db,
        "('a', 10.5, 1.0, false, 'k', now(), now()), ('b', 11.5, 2.0, false, 'k', now(), now()),
         ('c', 12.5, 3.0, false, 'k', now(), now()), ('d', 13.5, 4.0, false, 'k', now(), now()),
         ('stale', 14.5, 5.0, false, 'k', now(), now()), ('fresh', 15.5, 6.0, false, 'k', now(), now())",
    )
    .await;
    // Complete rows (with an alert stamp that must stay), then the
    // documented "brute force" update.
    db.db
        .execute_unprepared(
            "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
             SELECT now(), now(), t::thumbnail_types, 'old ' || t, o
             FROM unnest(ARRAY['a','b','c','d']) o, unnest(ARRAY['sdss','ls','ps1','dr8','new']) t;
             DELETE FROM thumbnails WHERE type IN ('sdss','ps1','ls','dr8');",
        )
        .await
        .expect("seed and brute force delete");
    // Failed PS1 lookups: one a day old (due for another try), one just
    // now (backed off).
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
             SELECT now(), now(), t::thumbnail_types, 'x', o
             FROM unnest(ARRAY['stale','fresh']) o, unnest(ARRAY['sdss','ls']) t;
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id) VALUES
               (now(), now() - interval '1 day', 'ps1', '{CURRENTLY_UNAVAILABLE}', 'stale'),
               (now(), now() at time zone 'utc', 'ps1', '{CURRENTLY_UNAVAILABLE}', 'fresh')"
        ))
        .await
        .expect("seed placeholders");
    let worker = RunningWorker::start(&config).await;
    wait_count(
        &db,
        "a, b, c and d healed, and stale's ps1 looked up again",
        "SELECT count(*) FROM thumbnails WHERE obj_id IN ('a','b','c','d','stale') AND type IN ('sdss','ls','ps1') AND public_url LIKE 'https://%'",
        13,
    )
    .await;
    // Whatever the sweeps published is processed before looking.
    bus.delivered().await;
    worker.stop().await;
    let rows = db.thumbnails().await;
    assert_eq!(url_of(&rows, "a", "ls"), Some(ls_url("10.5", "1.0")));
    assert_eq!(url_of(&rows, "a", "new"), Some("old new".into()));
    assert_eq!(url_of(&rows, "a", "dr8"), None, "retired type: not remade");
    // The day-old placeholder was looked up again (and stamped as tried),
    // the fresh one is backed off.
    assert_eq!(
        url_of(&rows, "stale", "ps1"),
        Some(format!("https:{}", image_src("14.5 5.0")))
    );
    assert_eq!(
        url_of(&rows, "fresh", "ps1").as_deref(),
        Some(CURRENTLY_UNAVAILABLE)
    );
    bus.delete().await;
}

#[tokio::test]
async fn the_sweep_counts_archival_types_only_and_runs_once_across_replicas() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let mut config = bus.config(&db, "");
    config.reconcile.batch = 3;
    insert_objs(
        &db,
        "('complete', 1.0, 1.0, false, 'k', now(), now()),
         ('on-demand-only', 2.0, 2.0, false, 'k', now(), now()),
         ('no-ps1', 3.0, 3.0, false, 'k', now(), now()),
         ('roid', 4.0, 4.0, true, 'k', now(), now()),
         ('nopos', NULL, 5.0, false, 'k', now(), now()),
         ('bad-ra', 400.0, 5.0, false, 'k', now(), now()),
         ('stamp-ps1', 6.0, 6.0, false, 'k', now(), now())",
    )
    .await;
    db.db
        .execute_unprepared(
            "INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
             VALUES (now(), now(), 'ps1', 'u', 'ZTF', 'stamp-ps1');
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
             SELECT now(), now(), t::thumbnail_types, 'u', 'stamp-ps1'
               FROM unnest(ARRAY['sdss','ls']) t;
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
             SELECT now(), now(), t::thumbnail_types, 'u', 'complete'
               FROM unnest(ARRAY['sdss','ls','ps1','sm','hst']) t
             UNION ALL
             SELECT now(), now(), t::thumbnail_types, 'u', 'on-demand-only'
               FROM unnest(ARRAY['sm','hst','chandra','jwst']) t
             UNION ALL
             SELECT now(), now(), t::thumbnail_types, 'u', 'no-ps1'
               FROM unnest(ARRAY['sdss','ls']) t",
        )
        .await
        .expect("seed thumbnails");
    let sweeper = Sweeper::new(&config, db.db.get_postgres_connection_pool().clone());
    let stop = CancellationToken::new();

    // Another replica holds the lock: this one does not sweep.
    let mut holder = db
        .db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .expect("conn");
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(thumbnails::store::sweep::SWEEP_LOCK)
        .execute(&mut *holder)
        .await
        .expect("lock");
    assert_eq!(sweeper.sweep_once(&stop).await.expect("sweep"), None);
    sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(thumbnails::store::sweep::SWEEP_LOCK)
        .execute(&mut *holder)
        .await
        .expect("unlock");
    drop(holder);

    let summary = sweeper
        .sweep_once(&stop)
        .await
        .expect("sweep")
        .expect("lock taken");
    assert_eq!(summary.published, 3, "{summary:?}");
    assert_eq!(summary.pages, 3);
    let mut events: Vec<Value> = bus
        .drain(&bus.topology.queue)
        .await
        .iter()
        .map(|(b, _)| serde_json::from_slice(b).expect("json"))
        .collect();
    events.sort_by_key(|e| e["id"].as_str().map(str::to_owned));
    assert_eq!(
        events,
        vec![
            serde_json::json!({"id": "no-ps1", "ra": 3.0, "dec": 3.0, "types": ["ps1"], "existing": true}),
            serde_json::json!({"id": "on-demand-only", "ra": 2.0, "dec": 2.0, "existing": true}),
            // An alert stamp of an archival type is not the archival row.
            serde_json::json!({"id": "stamp-ps1", "ra": 6.0, "dec": 6.0, "types": ["ps1"], "existing": true}),
        ]
    );

    // While the worker's queue holds more than max_queued events, nothing
    // is published again; a sweep stops after about max_queued events.
    config.reconcile.max_queued = 1;
    let capped = Sweeper::new(&config, db.db.get_postgres_connection_pool().clone());
    let first = capped
        .sweep_once(&stop)
        .await
        .expect("sweep")
        .expect("lock");
    assert!(first.capped && first.published == 1, "{first:?}");
    bus.publish(&event("elsewhere", 1.0, 1.0)).await;
    let second = capped
        .sweep_once(&stop)
        .await
        .expect("sweep")
        .expect("lock");
    assert_eq!((second.backlog, second.published), (Some(2), 0));
    bus.delete().await;
}

#[tokio::test]
async fn an_update_of_the_position_rewrites_and_announces_the_survey_urls() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let config = bus.config(&db, &ps1.url);
    let worker = RunningWorker::start(&config).await;
    let relay = RunningFeed::start(&config, &db).await;
    insert_objs(&db, "('moving', 10.0, 20.0, false, 'k', now(), now())").await;
    wait_count(&db, "three rows", "SELECT count(*) FROM thumbnails", 3).await;
    bus.delivered().await;
    let listener = bus.listen_stored().await;

    // Two updates in a burst: the rows end at the last position.
    db.db
        .execute_unprepared(
            "UPDATE objs SET ra = 11.0 WHERE id = 'moving';
             UPDATE objs SET ra = 12.25, dec = -1.5 WHERE id = 'moving';",
        )
        .await
        .expect("update");
    let want = [
        ("ls", ls_url("12.25", "-1.5")),
        ("ps1", format!("https:{}", image_src("12.25 -1.5"))),
        ("sdss", sdss_url("12.25", "-1.5")),
    ];
    eventually("rewritten rows", WAIT, || async {
        let rows = db.thumbnails().await;
        want.iter()
            .all(|(t, url)| url_of(&rows, "moving", t).as_deref() == Some(url.as_str()))
            .then_some(())
    })
    .await;
    let mut announced: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.iter().all(|(_, url)| announced.contains(url)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new URLs not announced: {announced:?}"
        );
        for (body, _) in bus.drain(&listener).await {
            let v: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["obj_id"], "moving", "{v}");
            for row in v["thumbnails"].as_array().into_iter().flatten() {
                announced.push(row["public_url"].as_str().unwrap_or_default().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&db, "SELECT count(*) FROM thumbnails").await, 3);

    // Becoming a moving object removes nothing.
    db.db
        .execute_unprepared("UPDATE objs SET is_roid = true WHERE id = 'moving'")
        .await
        .expect("update");
    wait_outbox_empty(&db).await;
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(count(&db, "SELECT count(*) FROM thumbnails").await, 3);
    relay.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn two_relays_and_two_workers_make_exactly_three_rows_per_object() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let mut config = bus.config(&db, "");
    config.feed.batch = 7; // many small claims, so the relays interleave
    let workers = (
        RunningWorker::start(&config).await,
        RunningWorker::start(&config).await,
    );
    let relays = (
        RunningFeed::start(&config, &db).await,
        RunningFeed::start(&config, &db).await,
    );
    for i in 0..10 {
        insert_objs(
            &db,
            &(0..30)
                .map(|j| {
                    format!(
                        "('o{i}-{j}', {}.5, 1.5, false, 'k', now(), now())",
                        i * 30 + j
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
        )
        .await;
    }
    wait_count(&db, "900 rows", "SELECT count(*) FROM thumbnails", 900).await;
    wait_outbox_empty(&db).await;
    bus.delivered().await;
    relays.0.stop().await;
    relays.1.stop().await;
    workers.0.stop().await;
    workers.1.stop().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT obj_id FROM thumbnails GROUP BY obj_id HAVING count(*) = 3) x"
        )
        .await,
        300
    );
    assert_eq!(count(&db, "SELECT count(*) FROM thumbnails").await, 900);
    bus.delete().await;
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_delete_loses_nothing() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let config = bus.config(&db, "");
    let pool = db.db.get_postgres_connection_pool().clone();
    feed::set_enabled(&pool, true).await.expect("enable");
    // Four INSERT statements of ten objects: four outbox rows.
    for i in 0..4 {
        insert_objs(
            &db,
            &(0..10)
                .map(|j| format!("('k{i}-{j}', {j}.25, {i}.5, false, 'k', now(), now())"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .await;
    }
    let link = PublisherConnection::open(AMQP, "it-feed-crash", &bus.topology)
        .await
        .expect("publisher");
    let relay = Relay::new(pool, 3);
    // Published and confirmed, then "killed": the transaction that would
    // delete the rows never commits.
    let page = relay
        .publish_page(link.publisher())
        .await
        .expect("publish")
        .expect("a page");
    assert_eq!(page.published, 30);
    drop(page);
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        4
    );
    // sqlx rolls a dropped transaction back asynchronously: until then its
    // rows stay locked and a relay would skip them.
    eventually("the dropped page rolled back", WAIT, || async {
        (count(
            &db,
            "SELECT count(*) FROM (SELECT id FROM thumbnails_feed_outbox FOR UPDATE SKIP LOCKED) t",
        )
        .await
            == 4)
            .then_some(())
    })
    .await;

    // The next relay publishes everything (the first 30 twice).
    let drained = relay
        .drain(link.publisher(), &CancellationToken::new())
        .await
        .expect("drain");
    assert_eq!((drained.rows, drained.published), (4, 40));
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        0
    );
    link.close("done").await;
    assert_eq!(bus.queue_len(&bus.topology.queue).await, 70);

    let worker = RunningWorker::start(&config).await;
    wait_count(&db, "120 rows", "SELECT count(*) FROM thumbnails", 120).await;
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(count(&db, "SELECT count(*) FROM thumbnails").await, 120);
    bus.delete().await;
}

#[tokio::test]
async fn switching_the_feed_off_stops_the_triggers_and_drops_what_they_wrote() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let mut config = bus.config(&db, "");
    let pool = db.db.get_postgres_connection_pool().clone();
    feed::set_enabled(&pool, true).await.expect("enable");
    insert_objs(&db, "('a', 1.0, 1.0, false, 'k', now(), now())").await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        1
    );
    config.feed.enabled = false;
    let conn = thumbnails::store::connect(&db.url, 2)
        .await
        .expect("connect");
    // Returns at once: nothing to run.
    feed::run(&config, conn, CancellationToken::new())
        .await
        .expect("feed off");
    insert_objs(&db, "('b', 1.0, 1.0, false, 'k', now(), now())").await;
    db.db
        .execute_unprepared("UPDATE objs SET ra = 2.0")
        .await
        .expect("update");
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        0
    );
    bus.delete().await;
}

#[tokio::test]
async fn the_feed_migration_goes_down_without_a_trace() {
    use migration::{Migrator, MigratorTrait};
    let db = TestDb::new().await;
    let traces = "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'thumbnails_feed%')
        + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'thumbnails_feed%')
        + (SELECT count(*) FROM pg_class WHERE relname LIKE 'thumbnails_feed%')";
    // Two triggers, two functions, two tables with their indexes and sequence.
    assert!(count(&db, traces).await >= 6);
    // Down to just before the feed migration (later ones go down first).
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let feed = names
        .iter()
        .position(|n| n == "m20261204_000001_feed")
        .expect("the feed migration");
    let steps = u32::try_from(names.len() - feed).expect("few migrations");
    Migrator::down(&db.db, Some(steps)).await.expect("down");
    assert_eq!(count(&db, traces).await, 0);
    // SkyPortal's table is left as it was, and inserts work.
    insert_objs(&db, "('a', 1.0, 1.0, false, 'k', now(), now())").await;
    thumbnails::store::migrate(&db.db).await.expect("up again");
    assert!(count(&db, traces).await >= 6);
}

#[tokio::test]
async fn objects_the_worker_creates_are_not_announced_again_by_the_feed() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    // The triggers on, as `feed`/`run` switch them at start (no relay runs
    // here, so what they record stays in the outbox to be counted).
    db.db
        .execute_unprepared("UPDATE thumbnails_feed_state SET enabled = true")
        .await
        .expect("feed on");
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    // An upstream service publishes: the worker inserts the obj itself.
    bus.publish(&event("upstream", 10.0, 20.0)).await;
    wait_count(&db, "three rows", "SELECT count(*) FROM thumbnails", 3).await;
    worker.stop().await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        0,
        "the worker's own insert into objs was recorded for the feed"
    );
    // Anyone else's insert is recorded.
    insert_objs(&db, "('plain', 1.0, 1.0, false, 'k', now(), now())").await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM thumbnails_feed_outbox").await,
        1
    );
    bus.delete().await;
}
