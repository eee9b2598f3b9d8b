//! PostgreSQL restarted, then every connection ended with
//! `pg_terminate_backend`, while the whole mixed load flows through
//! `thumbnails run` (issue "faults", case 3): 20,000 `obj.created`, 2,000
//! alerts, 200 uploads and 5,000 objects inserted by plain SQL for the feed.
//! The server is the test's own (a restart of the machine's would disturb
//! every other test). Afterwards: every row exactly once, every row
//! announced by `thumbnail.stored`, the feed's outbox empty, nothing
//! dead-lettered, one WARN line per component when the database went and
//! one INFO line when it came back; and, printed for docs/reliability.md,
//! how many seconds after the database answered again each component
//! resumed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cutouts::{cutouts_json, publish_alert};
use crate::helpers::*;
use crate::running::*;
use crate::sidecar::app::png;
use testkit::pg_server::PgServer;

const EVENTS: usize = 20_000;
const ALERTS: usize = 2_000;
const UPLOADS: usize = 200;
const FEED: usize = 5_000;
/// The load is sent in this many slices over a few seconds, so that the
/// faults meet every component with work in hand.
const SLICES: usize = 20;
const LONG: Duration = Duration::from_secs(300);
/// How long the restarted server stays down.
const DOWN: Duration = Duration::from_secs(12);

const LOST: &str = "database unreachable; holding work and retrying until it answers";
const BACK: &str = "database reachable again; resumed";

/// Slices each sender has sent.
#[derive(Default)]
struct Progress {
    broker: AtomicUsize,
    feed: AtomicUsize,
    uploads: AtomicUsize,
}

impl Progress {
    /// The slices every sender has sent.
    fn all(&self) -> usize {
        [&self.broker, &self.feed, &self.uploads]
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .min()
            .unwrap_or(0)
    }
}

/// The whole load, in slices, three senders side by side: the broker's
/// (events and alerts), SkyPortal's inserts (the feed) and the uploads.
async fn send_load(url: String, bus: Arc<TestBus>, port: u16, done: Arc<Progress>) {
    let pace = || tokio::time::sleep(Duration::from_millis(250));
    let part = |n: usize, s: usize| (n * s / SLICES)..(n * (s + 1) / SLICES);
    let broker = async {
        for s in 0..SLICES {
            let events: Vec<Vec<u8>> = part(EVENTS, s)
                .map(|i| event(&format!("pgr-ev-{i}"), 20.0 + i as f64 / 10_000.0, -5.0))
                .collect();
            bus.publish_many(&events).await;
            for i in part(ALERTS, s) {
                let body = cutouts_json(&format!("pgr-al-{i}")).to_string();
                publish_alert(&bus, body.as_bytes(), Some("application/json")).await;
            }
            done.broker.fetch_add(1, Ordering::SeqCst);
            pace().await;
        }
    };
    let feed = async {
        for s in 0..SLICES {
            insert_objs(&url, "pgr-feed", part(FEED, s)).await;
            done.feed.fetch_add(1, Ordering::SeqCst);
            pace().await;
        }
    };
    let uploads = async {
        let client = reqwest::Client::new();
        let picture = png(40, 40, true);
        for s in 0..SLICES {
            for i in part(UPLOADS, s) {
                upload(&client, port, &format!("pgr-up-{i}"), &picture).await;
            }
            done.uploads.fetch_add(1, Ordering::SeqCst);
            pace().await;
        }
    };
    tokio::join!(broker, feed, uploads);
}

/// The counts that make the run complete, each `(what, found, expected)`.
async fn counts(db: &TestDb) -> Vec<(&'static str, i64, i64)> {
    let objs = (EVENTS + ALERTS + UPLOADS + FEED) as i64;
    vec![
        (
            "objs",
            db.scalar_i64("SELECT count(*) FROM objs").await,
            objs,
        ),
        (
            "archival rows (sdss, ls, ps1 of every object)",
            db.scalar_i64("SELECT count(*) FROM thumbnails WHERE type IN ('sdss', 'ls', 'ps1')")
                .await,
            3 * objs,
        ),
        (
            "alert stamps",
            db.scalar_i64("SELECT count(*) FROM thumbnails WHERE survey = 'ZTF'")
                .await,
            3 * ALERTS as i64,
        ),
        (
            "uploads",
            db.scalar_i64(
                "SELECT count(*) FROM thumbnails WHERE origin = 'upload' AND survey IS NULL",
            )
            .await,
            UPLOADS as i64,
        ),
        (
            "feed outbox rows left",
            db.scalar_i64("SELECT count(*) FROM thumbnails_feed_outbox")
                .await,
            0,
        ),
        (
            "upload outbox rows left",
            db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await,
            0,
        ),
    ]
}

/// Each component's outage lines after `from` (and before `to`):
/// `(lost, back, seconds from `back_at` to its last back line)`.
fn outages(
    logs: &Logs,
    from: SystemTime,
    to: Option<SystemTime>,
    back_at: SystemTime,
) -> BTreeMap<String, (usize, usize, Option<f64>)> {
    let mut seen: BTreeMap<String, (usize, usize, Option<f64>)> = BTreeMap::new();
    for line in logs.lock().expect("logs").iter() {
        let Some(t) = timestamp(line) else { continue };
        if t < from || to.is_some_and(|to| t >= to) {
            continue;
        }
        let component = line["fields"]["component"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let entry = seen.entry(component).or_default();
        match message(line) {
            LOST => entry.0 += 1,
            BACK => {
                entry.1 += 1;
                // The last one: a component may have got a statement
                // through while the server was still shutting down (a
                // session not yet ended), and lost it again.
                entry.2 = Some(t.duration_since(back_at).map_or(0.0, |d| d.as_secs_f64()));
            }
            _ => {}
        }
    }
    seen.retain(|_, (lost, back, _)| *lost + *back > 0);
    seen
}

async fn rows(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT count(*) FROM thumbnails").await
}

#[tokio::test]
async fn a_restarted_database_and_ended_sessions_lose_nothing_and_each_component_resumes() {
    let server = PgServer::start()
        .await
        .expect("a PostgreSQL server of the test's own (needs root)");
    let db = TestDb::create_on(
        &format!("postgres://postgres@127.0.0.1:{}", server.port),
        "thumbnails_it_restart",
    )
    .await
    .expect("test database");
    let bus = Arc::new(TestBus::new().await);
    let stored = collect_stored(&bus.channel, &bus.topology).await;
    let service = Service::start(&db.url, &bus, None).await;
    let (port, logs) = (service.port, service.logs.clone());
    feed_enabled(&db, LONG).await;
    // The uploads' objects.
    insert_objs(&db.url, "pgr-up", 0..UPLOADS).await;
    let started = std::time::Instant::now();

    let progress = Arc::new(Progress::default());
    let load = tokio::spawn(send_load(
        db.url.clone(),
        bus.clone(),
        port,
        progress.clone(),
    ));

    // Fault 1: the server restarted (fast shutdown: every session ended,
    // connections refused until it is up again).
    // Once every sender is a few slices in: each component has work in
    // hand, and more comes while the database is away.
    eventually("work under way", LONG, || async {
        (progress.all() >= 3 && rows(&db).await > 3_000).then_some(())
    })
    .await;
    let restart_from = SystemTime::now();
    println!(
        "{:.1} s: restarting PostgreSQL, {} rows",
        started.elapsed().as_secs_f64(),
        rows(&db).await
    );
    // Down for longer than the pool's acquire timeout (10 s), so that every
    // component with work in hand meets the outage (a shorter one is waited
    // out inside the pool and never shows).
    server
        .restart_after(DOWN)
        .await
        .expect("restart PostgreSQL");
    let restart_back = SystemTime::now();
    let at_restart = rows(&db).await;

    // Fault 2: every session of the service's database ended.
    let slices_at_restart = progress.all();
    eventually("more work done", LONG, || async {
        (progress.all() >= slices_at_restart + 3 && rows(&db).await > at_restart + 10_000)
            .then_some(())
    })
    .await;
    let terminate_at = SystemTime::now();
    println!(
        "{:.1} s: ending every session",
        started.elapsed().as_secs_f64()
    );
    let ended = db
        .scalar_i64(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ))
        .await;
    assert!(ended > 0, "sessions to end");

    load.await.expect("the load was sent");
    println!("{:.1} s: load sent", started.elapsed().as_secs_f64());
    let mut last_report = std::time::Instant::now();
    eventually("every row written and announced", LONG, || {
        let report = last_report.elapsed() > Duration::from_secs(10);
        if report {
            last_report = std::time::Instant::now();
        }
        let (db, stored) = (&db, &stored);
        async move {
            let c = counts(db).await;
            let complete = c.iter().all(|(_, found, expected)| found == expected);
            let rows = rows(db).await;
            let announced = stored.lock().expect("ids").len() as i64;
            if report {
                println!("waiting: {c:?}, {rows} rows, {announced} announced");
            }
            (complete && announced >= rows).then_some(())
        }
    })
    .await;
    println!(
        "{:.1} s: all written and announced",
        started.elapsed().as_secs_f64()
    );
    // Exactly: no more rows than the counts, each row announced.
    let c = counts(&db).await;
    for (what, found, expected) in &c {
        assert_eq!(found, expected, "{what}");
    }
    let total = rows(&db).await;
    assert_eq!(
        total,
        (3 * (EVENTS + ALERTS + UPLOADS + FEED) + 3 * ALERTS + UPLOADS) as i64,
        "no duplicate rows"
    );
    let unannounced = unannounced(&db, &stored).await;
    assert_eq!(unannounced, 0, "every row has its thumbnail.stored");
    assert_eq!(
        bus.queue_len(&bus.topology.dead_queue()).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        bus.queue_len(&bus.cutouts.dead_queue()).await,
        0,
        "no alert dead-lettered"
    );

    // One line each way per component per outage; none per retry.
    let restart = outages(&logs, restart_from, Some(terminate_at), restart_back);
    let terminate = outages(&logs, terminate_at, None, terminate_at);
    println!(
        "database restarted: per component (lost lines, back lines, resumed after s): {restart:?}"
    );
    println!("sessions terminated: per component (lost lines, back lines, resumed after s): {terminate:?}");
    for component in ["worker", "cutouts", "uploads", "feed", "outbox"] {
        let (lost, back, after) = restart.get(component).copied().unwrap_or_default();
        // One line each way per outage; a statement that got through
        // while the server was shutting down makes two outages. The outbox
        // relay runs every 5 s and waits up to the pool's 10 s for a
        // connection: a round that starts late in the outage is served
        // once the server is back and never sees it.
        let noticed = if component == "outbox" { 0..=2 } else { 1..=2 };
        assert!(
            lost == back && noticed.contains(&back),
            "{component}: {lost} lines when lost, {back} when back"
        );
        if back > 0 {
            let after = after.expect("resumed");
            assert!(
                after <= 5.0,
                "{component} resumed {after:.2} s after the database answered"
            );
        }
    }
    for (component, (lost, back, after)) in &terminate {
        assert!(
            *lost <= 1 && *back <= 1 && lost == back,
            "{component}: {lost} lost, {back} back"
        );
        if let Some(after) = after {
            assert!(
                *after <= 5.0,
                "{component} resumed {after:.2} s after its sessions ended"
            );
        }
    }
    let per_retry = lines_saying(&logs, "write failed; retrying").len();
    assert_eq!(per_retry, 0, "no line per retry");

    service.stop().await;
    drop(db);
    drop(server);
}
