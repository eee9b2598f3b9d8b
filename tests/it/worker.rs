//! The worker end to end: events in, rows and events out.

use std::time::Duration;

use serde_json::{json, Value};
use thumbnails::surveys::{CURRENTLY_UNAVAILABLE, OUTSIDE_SURVEY};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

// The contract's URLs written out, not built from the default templates
// (as `ops::ls_url` is): a change to the defaults must fail here.
fn ls_url(ra: &str, dec: &str) -> String {
    format!("https://www.legacysurvey.org/viewer/jpeg-cutout?ra={ra}&dec={dec}&size=200&layer=ls-dr10&pixscale=0.3&bands=griz")
}

fn sdss_url(ra: &str, dec: &str) -> String {
    format!("https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg?TaskName=SkyServer.Chart.List&ra={ra}&dec={dec}&scale=0.3&width=200&height=200&opt=G&query=&Grid=on")
}

async fn rows_for(db: &TestDb, n: usize) -> Vec<(String, String, Option<String>)> {
    eventually("thumbnail rows", WAIT, || async {
        let rows = db.thumbnails().await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

#[tokio::test]
async fn events_become_rows_with_exact_urls_and_stored_events() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let listener = bus.listen_stored().await;
    let worker = RunningWorker::start(&bus.config(&db, &ps1.url)).await;

    bus.publish(&event("ZTF21aaaaaaa", 1.25, -0.0)).await;
    bus.publish(&event("ZTF21bbbbbbb", 10.0, 1e-05)).await;

    let rows = rows_for(&db, 6).await;
    let ps1_a = format!("https:{}", testkit::ps1::image_src("1.25 -0.0"));
    let ps1_b = format!("https:{}", testkit::ps1::image_src("10.0 1e-05"));
    assert_eq!(
        rows,
        vec![
            (
                "ZTF21aaaaaaa".into(),
                "ls".into(),
                Some(ls_url("1.25", "-0.0"))
            ),
            ("ZTF21aaaaaaa".into(), "ps1".into(), Some(ps1_a)),
            (
                "ZTF21aaaaaaa".into(),
                "sdss".into(),
                Some(sdss_url("1.25", "-0.0"))
            ),
            (
                "ZTF21bbbbbbb".into(),
                "ls".into(),
                Some(ls_url("10.0", "1e-05"))
            ),
            ("ZTF21bbbbbbb".into(), "ps1".into(), Some(ps1_b)),
            (
                "ZTF21bbbbbbb".into(),
                "sdss".into(),
                Some(sdss_url("10.0", "1e-05"))
            ),
        ]
    );
    // The obj rows are filled completely by the worker.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE internal_key <> '' AND created_at IS NOT NULL AND modified IS NOT NULL AND is_roid = false AND ra IS NOT NULL").await,
        2
    );

    // One event per object, carrying its three rows.
    let events = eventually("two thumbnail.stored events", WAIT, || async {
        let got = bus.drain(&listener).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    let mut events: Vec<Value> = events
        .iter()
        .map(|(b, _)| serde_json::from_slice(b).expect("json event"))
        .collect();
    events.extend(
        eventually("the rest of the events", WAIT, || async {
            let more = bus.drain(&listener).await;
            let total = events.len() + more.len();
            (total >= 2).then_some(more)
        })
        .await
        .iter()
        .map(|(b, _)| serde_json::from_slice::<Value>(b).expect("json event")),
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let mut objs: Vec<&str> = events.iter().filter_map(|e| e["obj_id"].as_str()).collect();
    objs.sort();
    assert_eq!(objs.len(), 2);
    let events: Vec<Value> = events
        .iter()
        .flat_map(|e| e["thumbnails"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(events.len(), 6);
    for e in &events {
        assert_eq!(e["origin"], json!("survey"));
        assert_eq!(e["file_uri"], Value::Null);
        assert!(e["id"].as_i64().is_some());
        assert!(e["public_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")));
    }
    let ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM thumbnails WHERE id IN ({})",
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await,
        6
    );

    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn duplicate_events_give_no_duplicate_rows() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let listener = bus.listen_stored().await;
    let worker = RunningWorker::start(&bus.config(&db, "")).await;

    let body = event("dup", 100.5, 20.5);
    let bodies: Vec<Vec<u8>> = (0..20).map(|_| body.clone()).collect();
    bus.publish_many(&bodies).await;
    rows_for(&db, 3).await;
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(bus.ready_stable().await, 0, "every delivery was processed");

    let rows = db.thumbnails().await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[1],
        (
            "dup".into(),
            "ps1".into(),
            Some(CURRENTLY_UNAVAILABLE.into())
        )
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, 1);
    // Only the first write is announced: one event carrying the three rows.
    let events = bus.drain(&listener).await;
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_slice(&events[0].0).expect("json");
    assert_eq!(
        event["thumbnails"].as_array().map(Vec::len),
        Some(3),
        "{event}"
    );
    bus.delete().await;
}

#[tokio::test]
async fn options_replace_types_and_roid() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let mut config = bus.config(&db, "");
    let worker = RunningWorker::start(&config).await;

    bus.publish(br#"{"id":"only-ls","ra":1.5,"dec":2.5,"types":["ls"]}"#)
        .await;
    bus.publish(br#"{"id":"roid","ra":1.5,"dec":2.5,"is_roid":true}"#)
        .await;
    bus.publish(&event("moved", 3.5, 4.5)).await;
    eventually("rows", WAIT, || async {
        let n = db.scalar_i64("SELECT count(*) FROM thumbnails").await;
        let objs = db.scalar_i64("SELECT count(*) FROM objs").await;
        (n == 4 && objs == 3).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE id = 'roid' AND is_roid")
            .await,
        1
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM thumbnails WHERE obj_id IN ('roid', 'only-ls') AND type <> 'ls'"
        )
        .await,
        0
    );

    // Without replace, a new template leaves stored rows alone; with it, the
    // listed types are rewritten.
    config.surveys.ls.template = "https://ls.example/dr11?ra={ra}&dec={dec}".into();
    let worker = RunningWorker::start(&config).await;
    bus.publish(&event("moved", 3.5, 4.5)).await;
    bus.publish(br#"{"id":"only-ls","ra":1.5,"dec":2.5,"types":["ls"],"replace":true}"#)
        .await;
    let url = eventually("replaced ls row", WAIT, || async {
        let rows = db.thumbnails().await;
        rows.into_iter()
            .find(|r| r.0 == "only-ls" && r.2.as_deref() != Some(&ls_url("1.5", "2.5")))
    })
    .await;
    assert_eq!(
        url.2.as_deref(),
        Some("https://ls.example/dr11?ra=1.5&dec=2.5")
    );
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(bus.ready_stable().await, 0, "every delivery was processed");
    let moved_ls = db
        .thumbnails()
        .await
        .into_iter()
        .find(|r| r.0 == "moved" && r.1 == "ls")
        .expect("moved ls");
    assert_eq!(moved_ls.2, Some(ls_url("3.5", "4.5")));
    bus.delete().await;
}

#[tokio::test]
async fn ps1_answers_become_urls_or_placeholders() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let worker = RunningWorker::start(&bus.config(&db, &ps1.url)).await;
    // The stand-in answers by the integer part of ra: 1 image, 2 no images,
    // 3 HTTP 500, 4 slower than the 1 s timeout.
    for (id, ra) in [("img", 1.5), ("none", 2.5), ("err", 3.5), ("slow", 4.5)] {
        bus.publish(&event(id, ra, 10.0)).await;
    }
    let ps1_rows = eventually("four ps1 rows", WAIT, || async {
        let rows: Vec<_> = db
            .thumbnails()
            .await
            .into_iter()
            .filter(|r| r.1 == "ps1")
            .collect();
        (rows.len() == 4).then_some(rows)
    })
    .await;
    let url = |id: &str| {
        ps1_rows
            .iter()
            .find(|r| r.0 == id)
            .and_then(|r| r.2.clone())
    };
    assert_eq!(
        url("img"),
        Some(format!("https:{}", testkit::ps1::image_src("1.5 10.0")))
    );
    assert_eq!(url("none").as_deref(), Some(OUTSIDE_SURVEY));
    assert_eq!(url("err").as_deref(), Some(CURRENTLY_UNAVAILABLE));
    assert_eq!(url("slow").as_deref(), Some(CURRENTLY_UNAVAILABLE));
    worker.stop().await;

    // A failed lookup is retried by the next event for the object; a real
    // answer is kept.
    let mut config = bus.config(&db, &ps1.url);
    config.surveys.ps1.timeout_s = 1.0;
    let worker = RunningWorker::start(&config).await;
    bus.publish(&event("err", 1.5, 10.0)).await; // now at an "image" position
    bus.publish(&event("none", 1.5, 10.0)).await;
    eventually("placeholder replaced", WAIT, || async {
        let rows = db.thumbnails().await;
        rows.iter()
            .any(|r| r.0 == "err" && r.1 == "ps1" && r.2.as_deref() != Some(CURRENTLY_UNAVAILABLE))
            .then_some(())
    })
    .await;
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(bus.ready_stable().await, 0, "every delivery was processed");
    let rows = db.thumbnails().await;
    let none = rows
        .iter()
        .find(|r| r.0 == "none" && r.1 == "ps1")
        .expect("none row");
    assert_eq!(none.2.as_deref(), Some(OUTSIDE_SURVEY));
    bus.delete().await;
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_and_good_ones_still_processed() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    let bad: Vec<(&[u8], &str)> = vec![
        (b"not json", "invalid JSON"),
        (br#"{"ra": 1, "dec": 2}"#, "missing field `id`"),
        (br#"{"id": "x", "ra": 360, "dec": 2}"#, "ra must be"),
        (br#"{"id": "x", "ra": 1, "dec": -91}"#, "dec must be"),
        (br#"{"id": "", "ra": 1, "dec": 2}"#, "id must not be empty"),
        (
            br#"{"id": "x", "ra": 1, "dec": 2, "types": ["jwst"]}"#,
            "types",
        ),
    ];
    for (body, _) in &bad {
        bus.publish(body).await;
    }
    bus.publish(&event("good", 5.5, 6.5)).await;
    rows_for(&db, 3).await;
    eventually("dead letters", WAIT, || async {
        let n = bus.queue_len(&bus.topology.dead_queue()).await;
        (n as usize >= bad.len()).then_some(())
    })
    .await;
    let dead = bus.drain(&bus.topology.dead_queue()).await;
    assert_eq!(dead.len(), bad.len());
    for (body, want) in bad {
        let (_, reason) = dead
            .iter()
            .find(|(b, _)| b.as_slice() == body)
            .unwrap_or_else(|| panic!("{} not dead-lettered", String::from_utf8_lossy(body)));
        let reason = reason.as_deref().unwrap_or_default();
        assert!(reason.contains(want), "{reason} should contain {want}");
    }
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, 1);
    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn shutdown_mid_stream_loses_nothing() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    // A slow PS1 keeps deliveries in flight when shutdown comes.
    let ps1 = Ps1StandIn::slow(Duration::from_millis(20)).await;
    let mut config = bus.config(&db, &ps1.url);
    config.amqp.prefetch = 50;
    let n = 6000;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| event(&format!("obj{i}"), (i % 360) as f64 + 0.5, 1.0))
        .collect();
    bus.publish_many(&bodies).await;

    let worker = RunningWorker::start(&config).await;
    eventually("some progress", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM objs").await > 100).then_some(())
    })
    .await;
    worker.stop().await;
    let acked = n as i64 - bus.ready_stable().await as i64;
    let complete = db
        .scalar_i64("SELECT count(*) FROM (SELECT obj_id FROM thumbnails GROUP BY obj_id HAVING count(*) = 3) c")
        .await;
    assert!(acked < n as i64, "stopped mid-stream");
    // In-flight deliveries were finished and acked; nothing acked is
    // incomplete and the rest wait in the queue.
    assert_eq!(
        complete, acked,
        "every finished delivery is acked, no other"
    );

    let worker = RunningWorker::start(&config).await;
    eventually("all objects complete", Duration::from_secs(120), || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 3 * n as i64).then_some(())
    })
    .await;
    eventually("queue drained", WAIT, || async {
        (bus.queue_len(&bus.topology.queue).await == 0).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, n as i64);
    assert_eq!(bus.queue_len(&bus.topology.dead_queue()).await, 0);
    bus.delete().await;
}

#[tokio::test]
async fn ids_with_quotes_and_sql_keywords_round_trip_unchanged() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    let ids = [
        "O'Brien\"; DROP TABLE objs; --",
        "x') ON CONFLICT DO NOTHING; SELECT pg_sleep(10); --",
        "$1 $$ \\ %s {ra} ünïcødé 🌌",
        "ZTF21/../../etc/passwd",
    ];
    for id in ids {
        bus.publish(&event(id, 7.5, 8.5)).await;
    }
    let rows = rows_for(&db, 3 * ids.len()).await;
    for id in ids {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == id).collect();
        assert_eq!(mine.len(), 3, "{id}: {rows:?}");
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs").await,
        ids.len() as i64
    );
    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn replace_never_overwrites_an_uploaded_row() {
    use sea_orm::ConnectionTrait;
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    db.db
        .execute_unprepared(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
               VALUES ('up', 1.5, 2.5, false, 'k', now(), now());
             INSERT INTO thumbnails (created_at, modified, type, public_url, file_uri, origin, obj_id)
               VALUES (now(), now(), 'sdss', '/static/thumbnails/x/up_sdss.png', '/data/up_sdss.png', 'upload', 'up')",
        )
        .await
        .expect("seed an upload");
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    bus.publish(br#"{"id":"up","ra":1.5,"dec":2.5,"replace":true}"#)
        .await;
    rows_for(&db, 3).await;
    bus.delivered().await;
    worker.stop().await;
    assert_eq!(bus.ready_stable().await, 0, "every delivery was processed");
    let sdss = db
        .thumbnails()
        .await
        .into_iter()
        .find(|r| r.1 == "sdss")
        .expect("sdss row");
    assert_eq!(sdss.2.as_deref(), Some("/static/thumbnails/x/up_sdss.png"));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails WHERE file_uri = '/data/up_sdss.png'")
            .await,
        1
    );
    bus.delete().await;
}

#[tokio::test]
async fn ps1_lookups_are_capped_per_host_and_failures_retried_with_back_off() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    // Every position fails twice, then answers.
    let ps1 = Ps1StandIn::with(testkit::ps1::Ps1Mode::Flaky { failures: 2 }).await;
    let mut config = bus.config(&db, &ps1.url);
    config.surveys.ps1.max_concurrent = 4;
    config.surveys.ps1.retry_first_s = 0.2;
    config.surveys.ps1.retry_max_s = 0.5;
    let worker = RunningWorker::start(&config).await;
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            event(
                &format!("ZTF-flaky-{i:02}"),
                10.0 + f64::from(i) / 100.0,
                5.0,
            )
        })
        .collect();
    bus.publish_many(&bodies).await;
    // No new event: the worker's own retries turn every placeholder into an image.
    eventually("a real PS1 URL for every object", WAIT, || async {
        (db.scalar_i64(
            "SELECT count(*) FROM thumbnails WHERE type = 'ps1' AND public_url LIKE 'https://ps1images%'",
        )
        .await
            == 40)
            .then_some(())
    })
    .await;
    worker.stop().await;
    use std::sync::atomic::Ordering;
    assert_eq!(
        ps1.stats.requests.load(Ordering::SeqCst),
        120,
        "three lookups each"
    );
    let most = ps1.stats.max_in_flight.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} lookups at once to one host");
    assert_eq!(bus.queue_len(&bus.topology.dead_queue()).await, 0);
    bus.delete().await;
}

#[tokio::test]
async fn an_older_position_handled_late_does_not_overwrite_a_newer_one() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let mut config = bus.config(&db, &ps1.url);
    config.surveys.ps1.timeout_s = 10.0;
    db.add_obj("ZTF-moved").await;
    // The object moved twice; the first move's PS1 lookup is slow (ra 5.x).
    let moved = |ra: f64, seq: i64| {
        serde_json::to_vec(
            &json!({"id": "ZTF-moved", "ra": ra, "dec": 20.0, "existing": true, "seq": seq}),
        )
        .expect("json")
    };
    for (ra, seq) in [(5.5, 1), (6.5, 2)] {
        bus.publisher
            .publish_json(thumbnails::bus::ROUTING_OBJ_UPDATED, &moved(ra, seq), true)
            .await
            .expect("publish obj.updated");
    }
    let worker = RunningWorker::start(&config).await;
    let newest_ps1 = format!("https:{}", testkit::ps1::image_src("6.5 20.0"));
    eventually("the newer position's ps1", WAIT, || async {
        db.thumbnails()
            .await
            .iter()
            .any(|r| r.1 == "ps1" && r.2.as_deref() == Some(newest_ps1.as_str()))
            .then_some(())
    })
    .await;
    // The slow, older lookup answers after 2 s: its write must be refused.
    bus.delivered().await;
    worker.stop().await;
    let rows = db.thumbnails().await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (_, ttype, url) in &rows {
        let url = url.as_deref().unwrap_or_default();
        assert!(
            url.contains("6.5") && !url.contains("5.5"),
            "{ttype} holds an older position: {url}"
        );
    }
    bus.delete().await;
}
