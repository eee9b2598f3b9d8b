//! `thumbnails replay`: events for stored objects, for the worker.

use std::time::{Duration, Instant};

use thumbnails::bus::ObjCreated;
use thumbnails::ops::replay::{replay, ReplayOptions, Selection};
use thumbnails::surveys::{ThumbnailType, CURRENTLY_UNAVAILABLE, OUTSIDE_SURVEY};

use super::*;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);

fn opts(selection: Selection) -> ReplayOptions {
    ReplayOptions {
        selection,
        types: None,
        replace: false,
        rate: None,
        dry_run: false,
        // Small pages, so that paging itself is exercised.
        batch_size: 3,
        progress: false,
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

fn missing() -> Selection {
    Selection {
        missing: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn replay_missing_fills_exactly_what_was_missing_with_the_worker_running() {
    let (db, bus, ps1) = (
        TestDb::new().await,
        TestBus::new().await,
        Ps1StandIn::start().await,
    );
    let config = bus.config(&db, &ps1.url);
    for i in 0..5 {
        let id = format!("full{i}");
        let ra = 10.0 + f64::from(i);
        obj(&db, &id, Some(ra), Some(5.0), false).await;
        thumb(
            &db,
            &id,
            "sdss",
            Some("http://skyservice.pha.jhu.edu/DR9/old"),
            None,
        )
        .await;
        thumb(
            &db,
            &id,
            "ls",
            Some(&ls_url(&format!("{ra:?}"), "5.0")),
            Some("survey"),
        )
        .await;
        thumb(
            &db,
            &id,
            "ps1",
            Some("https://ps1images.stsci.edu/cgi-bin/fitscut.cgi?x"),
            None,
        )
        .await;
    }
    obj(&db, "sdss_only", Some(30.0), Some(-10.0), false).await;
    thumb(
        &db,
        "sdss_only",
        "sdss",
        Some(&sdss_url("30.0", "-10.0")),
        None,
    )
    .await;
    obj(&db, "none", Some(40.0), Some(20.0), false).await;
    obj(&db, "placeholder", Some(20.5), Some(-1.0), false).await;
    thumb(
        &db,
        "placeholder",
        "sdss",
        Some(&sdss_url("20.5", "-1.0")),
        None,
    )
    .await;
    thumb(
        &db,
        "placeholder",
        "ls",
        Some(&ls_url("20.5", "-1.0")),
        None,
    )
    .await;
    let unavailable = thumb(&db, "placeholder", "ps1", Some(CURRENTLY_UNAVAILABLE), None).await;
    obj(&db, "outside", Some(50.0), Some(-60.0), false).await;
    thumb(&db, "outside", "ls", Some(&ls_url("50.0", "-60.0")), None).await;
    thumb(&db, "outside", "ps1", Some(OUTSIDE_SURVEY), None).await;
    // A moving object never gets archival rows; one without a position cannot.
    obj(&db, "roid", Some(60.0), Some(1.0), true).await;
    obj(&db, "nopos", None, None, false).await;
    let before = snapshot(&db).await;
    let worker = RunningWorker::start(&config).await;

    let summary = replay(&db.db, Some(&bus.publisher), &opts(missing()))
        .await
        .expect("replay");
    assert_eq!(
        (summary.scanned, summary.published, summary.skipped),
        (11, 4, 1),
        "{summary:?}"
    );
    assert_eq!(summary.line(false), "replay: published 4 events");

    eventually("every object complete", WAIT, || async {
        let rows = db.scalar_i64("SELECT count(*) FROM thumbnails").await;
        let placeholders = db
            .scalar_i64("SELECT count(*) FROM thumbnails WHERE public_url = '/static/images/currently_unavailable.png'")
            .await;
        (rows == 27 && placeholders == 0).then_some(())
    })
    .await;
    let after = snapshot(&db).await;
    for was in &before {
        let now = after.iter().find(|r| r.0 == was.0).expect("no row removed");
        if was.0 == unavailable {
            let want = format!("https:{}", testkit::ps1::image_src("20.5 -1.0"));
            assert_eq!(
                now.3.as_deref(),
                Some(want.as_str()),
                "the failed lookup was retried"
            );
        } else {
            assert_eq!(now, was, "complete rows are untouched");
        }
    }
    let per_obj: Vec<(String, i64)> = sea_orm::sqlx::query_as(
        "SELECT o.id, count(t.id) FROM objs o LEFT JOIN thumbnails t ON t.obj_id = o.id
         AND t.type IN ('sdss', 'ls', 'ps1') GROUP BY o.id ORDER BY o.id",
    )
    .fetch_all(pool(&db))
    .await
    .expect("per object");
    for (id, n) in &per_obj {
        let want = if id == "roid" || id == "nopos" { 0 } else { 3 };
        assert_eq!(*n, want, "{id}");
    }

    let again = replay(&db.db, Some(&bus.publisher), &opts(missing()))
        .await
        .expect("second replay");
    assert_eq!((again.published, again.skipped), (0, 1), "{again:?}");
    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn replay_dry_run_obj_id_types_replace_and_rate() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let queue = bus.topology.queue.clone();
    obj(&db, "X", Some(1.0), Some(2.0), false).await;
    obj(&db, "Y", Some(3.0), Some(-4.5), false).await;
    obj(&db, "Z", None, Some(1.0), false).await;

    let dry = ReplayOptions {
        dry_run: true,
        ..opts(Selection::default())
    };
    let summary = replay(&db.db, Some(&bus.publisher), &dry)
        .await
        .expect("dry run");
    assert_eq!((summary.published, summary.skipped), (2, 1));
    assert_eq!(
        summary.line(true),
        "replay: would publish 2 events (dry run)"
    );
    assert_eq!(
        bus.queue_len(&queue).await,
        0,
        "a dry run publishes nothing"
    );

    let by_id = ReplayOptions {
        types: Some(vec![ThumbnailType::Ls]),
        replace: true,
        ..opts(Selection {
            obj_ids: vec!["Y".into(), "nope".into(), "Y".into()],
            ..Default::default()
        })
    };
    let summary = replay(&db.db, Some(&bus.publisher), &by_id)
        .await
        .expect("by id");
    assert_eq!((summary.published, summary.not_found), (1, 1));
    let got = eventually("the event", WAIT, || async {
        let got = bus.drain(&queue).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 1);
    let ev = ObjCreated::parse(&got[0].0).expect("a valid obj.created");
    assert_eq!((ev.id.as_str(), ev.ra, ev.dec), ("Y", 3.0, -4.5));
    assert_eq!(
        (ev.types, ev.replace, ev.is_roid),
        (vec![ThumbnailType::Ls], true, false)
    );

    // Two events at 5 per second: the second waits a fifth of a second.
    let paced = ReplayOptions {
        rate: Some(5.0),
        ..opts(Selection::default())
    };
    let started = Instant::now();
    let summary = replay(&db.db, Some(&bus.publisher), &paced)
        .await
        .expect("paced");
    assert_eq!(summary.published, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    let got = eventually("two events", WAIT, || async {
        let n = bus.queue_len(&queue).await;
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(got, 2);

    // Stopped: nothing more is published.
    let stopped = opts(Selection::default());
    stopped.stop.cancel();
    let summary = replay(&db.db, Some(&bus.publisher), &stopped)
        .await
        .expect("stopped");
    assert!(summary.interrupted);
    assert_eq!(summary.published, 0);
    assert_eq!(bus.queue_len(&queue).await, 2);
    bus.delete().await;
}

#[tokio::test]
async fn replay_binary_prints_the_summary_and_fails_in_one_line() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = bus.config(&db, "");
    obj(&db, "K", Some(100.0), Some(10.0), false).await;
    obj(&db, "L", Some(101.0), Some(11.0), false).await;
    thumb(&db, "L", "ps1", Some(CURRENTLY_UNAVAILABLE), None).await;

    let out = thumbnails_cli(
        dir.path(),
        &config,
        &["replay", "--missing", "--dry-run"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "replay: would publish 2 events (dry run)\n");

    let out = thumbnails_cli(
        dir.path(),
        &config,
        &["replay", "--obj-id", "K", "--types", "sdss,ls"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "replay: published 1 events\n");
    assert_eq!(bus.queue_len(&bus.topology.queue).await, 1);

    for bad in [
        vec!["replay"],
        vec!["replay", "--all", "--missing"],
        vec!["replay", "--all", "--types", "new"],
    ] {
        let out = thumbnails_cli(dir.path(), &config, &bad, &[]).await;
        assert!(!out.status.success(), "{bad:?} must fail");
    }
    let out = thumbnails_cli(
        dir.path(),
        &config,
        &["replay", "--all"],
        &[("THUMBNAILS_AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f")],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("127.0.0.1:1"),
        "{err}"
    );
    bus.delete().await;
}

#[tokio::test]
async fn replay_to_an_exchange_without_the_worker_queue_is_an_error() {
    use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions};
    use lapin::types::FieldTable;

    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    obj(&db, "U", Some(1.0), Some(1.0), false).await;
    let lonely = format!("{}.lonely", bus.topology.exchange);
    bus.channel
        .exchange_declare(
            lonely.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let publisher = thumbnails::bus::Publisher::open(&bus._conn, &lonely)
        .await
        .expect("publisher");

    let e = replay(&db.db, Some(&publisher), &opts(Selection::default()))
        .await
        .expect_err("mandatory publishes to nowhere fail");
    let text = e.to_string();
    assert!(text.contains("no queue is bound"), "{text}");
    assert!(text.contains("after 0 events were confirmed"), "{text}");
    let _ = bus
        .channel
        .exchange_delete(lonely.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    bus.delete().await;
}
