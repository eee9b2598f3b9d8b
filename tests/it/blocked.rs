//! A blocked broker (issue "faults", case 4): RabbitMQ's memory alarm
//! (`set_vm_memory_high_watermark` set very low) blocks every connection
//! that publishes. On a node of the test's own (`scripts/rabbitmq-cluster`
//! with one node: an alarm on the machine's broker would hold every other
//! test's publishes), with `thumbnails run` on it:
//! - uploads still answer, and their `thumbnail.stored` go out once the
//!   alarm clears;
//! - the worker's `thumbnail.stored`, the feed's `obj.created` and the
//!   PS1 retries' `obj.created` wait, for longer than the publish timeout,
//!   without failing, reconnecting or dead-lettering;
//! - one line per connection when blocked and one when unblocked, and
//!   `/readyz` shows since when.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::*;
use crate::running::*;
use crate::sidecar::app::png;
use thumbnails::surveys::CURRENTLY_UNAVAILABLE;

const NODE: &str = "thumbnails-blocked-1@localhost";
const URL: &str = "amqp://guest:guest@127.0.0.1:5741/%2f";
const EVENTS: usize = 10_000;
const WAIT: Duration = Duration::from_secs(120);
const RETRIES: Duration = Duration::from_secs(300);
/// How long the alarm lasts: longer than the publishers' confirm timeout
/// (10 s), which a blocked connection must not run into.
const ALARM: Duration = Duration::from_secs(13);

const BLOCKED: &str = "the broker blocks publishing on this connection (a memory or disk alarm); publishes wait until it clears";
const UNBLOCKED: &str = "the broker unblocked this connection; publishes resume";

/// `scripts/rabbitmq-cluster` for the one-node broker of this test.
async fn node(args: &[&str]) {
    let one_node = [
        ("CLUSTER_SIZE", "1"),
        ("CLUSTER_DIR", "/tmp/thumbnails-rabbitmq-blocked"),
        ("CLUSTER_BASE_PORT", "5741"),
        ("CLUSTER_NODE_PREFIX", "thumbnails-blocked"),
    ];
    crate::cluster::rabbitmq_cluster(&one_node, args).await;
}

async fn watermark(value: &str) {
    let out = Command::new("rabbitmqctl")
        .args(["-n", NODE, "set_vm_memory_high_watermark", value])
        .output()
        .await
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "set_vm_memory_high_watermark {value}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn readyz(client: &reqwest::Client, port: u16) -> (StatusCode, Value) {
    let answer = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .expect("/readyz");
    let status = answer.status();
    let body = answer.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn a_blocked_broker_holds_publishers_and_uploads_still_answer() {
    node(&["up"]).await;
    let db = TestDb::new().await;
    let bus = TestBus::on(URL).await;
    // The listener on a connection that never publishes (those are not
    // blocked).
    let listener = thumbnails::bus::connect(URL, "blocked-test listener")
        .await
        .expect("listener connection");
    let channel = listener.create_channel().await.expect("channel");
    let stored = collect_stored(&channel, &bus.topology).await;
    // PS1 fails each object's first lookup: its retry is due (2 s
    // after the first failure) while the broker blocks them.
    let ps1 = Ps1StandIn::with(testkit::ps1::Ps1Mode::Flaky { failures: 1 }).await;
    let service = Service::start_with(
        &db.url,
        &bus,
        Some(URL),
        &[
            ("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", ps1.url.as_str()),
            ("THUMBNAILS_SURVEYS__PS1__RETRY_FIRST_S", "2"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    feed_enabled(&db, WAIT).await;
    insert_objs(&db.url, "blk-up", 0..20).await;
    eventually("the uploads' objects relayed", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 60).then_some(())
    })
    .await;

    // Work in hand when the alarm goes off: the worker is writing and
    // announcing 10,000 objects.
    let events: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| event(&format!("blk-ev-{i}"), 30.0 + i as f64 / 10_000.0, 5.0))
        .collect();
    bus.publish_many(&events).await;
    watermark("0.0001").await;
    let blocked_at = SystemTime::now();

    // Uploads answer (their events wait in the outbox).
    let picture = png(40, 40, true);
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        slowest =
            slowest.max(upload(&client, service.port, &format!("blk-up-{i}"), &picture).await);
    }
    assert!(
        slowest < Duration::from_secs(5),
        "an upload took {slowest:?} under the alarm"
    );
    // SkyPortal inserts objects: the feed's events wait.
    insert_objs(&db.url, "blk-feed", 0..100).await;
    let (status, ready) = eventually("/readyz shows the blocked broker", WAIT, || async {
        let (status, body) = readyz(&client, service.port).await;
        body["data"]["broker"]["blocked_since"]
            .is_string()
            .then_some((status, body))
    })
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a blocked broker still serves: {ready}"
    );
    // The alarm lasts (this is the fault, not a wait for it).
    tokio::time::sleep(ALARM.saturating_sub(blocked_at.elapsed().unwrap_or_default())).await;
    let held = db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await;
    assert!(
        held > 0,
        "upload events wait in the outbox during the alarm"
    );
    watermark("0.4").await;

    // Everything goes out.
    let objs = 20 + EVENTS as i64 + 100;
    eventually("every row written and announced", WAIT, || async {
        let rows = db.scalar_i64("SELECT count(*) FROM thumbnails").await;
        let outbox = db.scalar_i64("SELECT count(*) FROM thumbnail_outbox").await
            + db.scalar_i64("SELECT count(*) FROM thumbnails_feed_outbox")
                .await;
        let left = unannounced(&db, &stored).await;
        (rows == 3 * objs + 20 && outbox == 0 && left == 0).then_some(())
    })
    .await;
    // The held PS1 retries went out: every ps1 row found its image (10,000
    // retries, then 10,000 lookups: the longest part of the test).
    eventually("every PS1 retry sent", RETRIES, || async {
        let placeholders = db
            .scalar_i64(&format!(
                "SELECT count(*) FROM thumbnails WHERE type = 'ps1' AND public_url = '{CURRENTLY_UNAVAILABLE}'"
            ))
            .await;
        (placeholders == 0).then_some(())
    })
    .await;
    assert_eq!(
        bus.queue_len(&bus.topology.dead_queue()).await,
        0,
        "nothing dead-lettered"
    );
    let (status, ready) = readyz(&client, service.port).await;
    assert_eq!(
        (status, &ready["data"]["broker"]),
        (StatusCode::OK, &Value::from("ok")),
        "{ready}"
    );

    // One line each way per blocked connection; no failure, no reconnect.
    let per_connection = |text: &str| {
        let mut names: Vec<String> = lines_saying(&service.logs, text)
            .iter()
            .map(|l| {
                l["fields"]["connection"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        names.sort();
        names
    };
    let (blocked, unblocked) = (per_connection(BLOCKED), per_connection(UNBLOCKED));
    println!("blocked connections: {blocked:?}");
    for publisher in [
        "thumbnails-worker it-",
        "thumbnails-worker ps1-retries",
        "thumbnails-feed",
        "thumbnails-sidecar",
    ] {
        assert!(
            blocked.iter().any(|name| name.starts_with(publisher)),
            "{publisher} was blocked and said so: {blocked:?}"
        );
    }
    assert_eq!(blocked, unblocked, "each block has its unblock line");
    let mut unique = blocked.clone();
    unique.dedup();
    assert_eq!(unique, blocked, "one line per connection");
    for quiet in [
        "publishing thumbnail.stored failed; leaving the message for redelivery",
        "feed: publishing failed; the rows stay for the next try",
        "lost the broker; reconnecting (unacked messages return to the queue)",
        "outbox relay failed; will retry",
        "cannot publish a PS1 retry; trying later",
    ] {
        assert!(
            lines_saying(&service.logs, quiet).is_empty(),
            "no {quiet:?} while blocked"
        );
    }

    service.stop().await;
    bus.delete().await;
    drop(listener);
    node(&["down"]).await;
}
