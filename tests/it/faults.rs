//! Faults: a cut broker connection, a database outage, SIGKILL, and a flood
//! of bad input. Each is bounded in time and touches only its own database,
//! exchange, queues and connection.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::*;

const LONG: Duration = Duration::from_secs(180);

fn events(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}{i}"),
                (i % 359) as f64 + 0.25,
                (i % 89) as f64 - 44.5,
            )
        })
        .collect()
}

async fn all_complete(db: &TestDb, bus: &TestBus, n: usize) {
    eventually("every object has its three rows", LONG, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 3 * n as i64).then_some(())
    })
    .await;
    eventually("queue drained", LONG, || async {
        (bus.queue_len(&bus.topology.queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, n as i64);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM (SELECT obj_id FROM thumbnails GROUP BY obj_id HAVING count(*) <> 3) x").await,
        0
    );
    assert_eq!(bus.queue_len(&bus.topology.dead_queue()).await, 0);
}

/// Broker-side pids of the connections whose name contains `name`.
pub async fn connection_pids(name: &str) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .await
        .expect("rabbitmqctl list_connections");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&format!("{{\"connection_name\",\"{name}\"}}")))
        .filter_map(|line| line.split('\t').next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn broker_connection_cut_is_survived() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    // A slow PS1 keeps the worker busy long enough to cut it mid-stream.
    let ps1 = Ps1StandIn::slow(Duration::from_millis(50)).await;
    let mut config = bus.config(&db, &ps1.url);
    config.amqp.prefetch = 20;
    let n = 4000;
    bus.publish_many(&events("cut", n)).await;
    let worker = RunningWorker::start(&config).await;
    eventually("some progress", LONG, || async {
        (db.scalar_i64("SELECT count(*) FROM objs").await > 50).then_some(())
    })
    .await;

    let name = format!("thumbnails-worker {}", bus.topology.queue);
    let before = connection_pids(&name).await;
    assert_eq!(before.len(), 1, "the worker's connection is found by name");
    let closed = Command::new("rabbitmqctl")
        .args([
            "-q",
            "close_connection",
            &before[0],
            "test: cut the worker's connection",
        ])
        .status()
        .await
        .expect("rabbitmqctl close_connection");
    assert!(closed.success());
    assert!(
        db.scalar_i64("SELECT count(*) FROM objs").await < n as i64,
        "the cut happened mid-stream"
    );
    let after = eventually("the worker reconnects", LONG, || async {
        let pids = connection_pids(&name).await;
        (pids.len() == 1 && pids != before).then_some(pids)
    })
    .await;
    assert_ne!(after, before);
    all_complete(&db, &bus, n).await;
    worker.stop().await;
    bus.delete().await;
}

#[tokio::test]
async fn database_outage_holds_messages_until_it_returns() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    let n = 2000;
    let bodies = events("pg", n);
    bus.publish_many(&bodies[..n / 2]).await;
    eventually("first half written", LONG, || async {
        (db.scalar_i64("SELECT count(*) FROM objs").await == (n / 2) as i64).then_some(())
    })
    .await;

    // Refuse new connections to the test's own database and end the
    // worker's sessions in it.
    db.refuse_connections().await;
    bus.publish_many(&bodies[n / 2..]).await;
    // The outage lasts a few seconds (this is the fault, not a wait for it).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        bus.queue_len(&bus.topology.dead_queue()).await,
        0,
        "nothing is dead-lettered while the database is away"
    );
    db.allow_connections().await;
    all_complete(&db, &bus, n).await;
    worker.stop().await;
    bus.delete().await;
}

fn spawn_binary(db: &TestDb, bus: &TestBus, command: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_thumbnails"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"))
        .arg(command)
        .env("THUMBNAILS_DATABASE__URL", &db.url)
        .env("THUMBNAILS_AMQP__EXCHANGE", &bus.topology.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &bus.topology.queue)
        .env("THUMBNAILS_AMQP__CUTOUTS_QUEUE", &bus.cutouts.queue)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn thumbnails")
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let n = 20_000;
    bus.publish_many(&events("kill", n)).await;
    let mut worker = spawn_binary(&db, &bus, "worker");
    eventually("some progress", LONG, || async {
        (db.scalar_i64("SELECT count(*) FROM objs").await > 100).then_some(())
    })
    .await;
    worker.kill().await.expect("SIGKILL");
    let done = db.scalar_i64("SELECT count(*) FROM objs").await;
    assert!(done < n as i64, "killed mid-stream ({done} of {n} done)");

    let mut worker = spawn_binary(&db, &bus, "worker");
    all_complete(&db, &bus, n).await;
    let status = sigterm(&mut worker).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    bus.delete().await;
}

/// A tiny deterministic generator, so a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Bodies labelled valid or not by construction.
fn generated_bodies(n: usize) -> Vec<(Vec<u8>, bool)> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("gen{i}");
        let body: (Vec<u8>, bool) = match rng.below(12) {
            0 => ((0..rng.below(64)).map(|_| rng.next() as u8).collect(), false),
            1 => {
                let full = event(&id, 10.0, 10.0);
                let cut = 1 + rng.below(full.len() as u64 - 2) as usize;
                (full[..cut].to_vec(), false)
            }
            2 => (format!(r#"{{"id": {i}, "ra": 1, "dec": 2}}"#).into_bytes(), false),
            3 => (format!(r#"{{"id": "{id}", "ra": NaN, "dec": 2}}"#).into_bytes(), false),
            4 => (format!(r#"{{"id": "{id}", "ra": 1, "dec": Infinity}}"#).into_bytes(), false),
            5 => (
                serde_json::to_vec(&serde_json::json!({"id": "x".repeat(100_000), "ra": 1.0, "dec": 2.0})).expect("json"),
                false,
            ),
            6 => (
                serde_json::to_vec(&serde_json::json!({"id": format!("{id}\u{0007}\u{0000}"), "ra": 1.0, "dec": 2.0})).expect("json"),
                false,
            ),
            7 => (event(&id, 360.0 + rng.below(1000) as f64, 0.0), false),
            8 => (event(&id, 1.0, -90.5 - rng.below(100) as f64), false),
            9 => (format!(r#"{{"id": "{id}", "ra": "12", "dec": 2}}"#).into_bytes(), false),
            10 => (
                serde_json::to_vec(&serde_json::json!({"id": id, "ra": 1.5, "dec": 2.5, "extra": {"nested": [1, 2]}, "x": null})).expect("json"),
                true,
            ),
            _ => (event(&id, rng.below(360) as f64 + 0.5, rng.below(180) as f64 - 89.5), true),
        };
        out.push(body);
    }
    out
}

#[tokio::test]
async fn ten_thousand_generated_bodies_are_sorted_into_rows_and_dead_letters() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let bodies = generated_bodies(10_000);
    let valid = bodies.iter().filter(|(_, ok)| *ok).count();
    let invalid = bodies.len() - valid;
    assert!(valid > 1000 && invalid > 5000);
    let raw: Vec<Vec<u8>> = bodies.iter().map(|(b, _)| b.clone()).collect();
    bus.publish_many(&raw).await;
    let worker = RunningWorker::start(&bus.config(&db, "")).await;
    eventually("every invalid body dead-lettered", LONG, || async {
        (bus.queue_len(&bus.topology.dead_queue()).await as usize == invalid).then_some(())
    })
    .await;
    eventually("every valid body written", LONG, || async {
        (db.scalar_i64("SELECT count(*) FROM objs").await as usize == valid).then_some(())
    })
    .await;
    eventually("queue drained", LONG, || async {
        (bus.queue_len(&bus.topology.queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM thumbnails").await as usize,
        3 * valid
    );
    let dead = bus.drain(&bus.topology.dead_queue()).await;
    assert_eq!(dead.len(), invalid);
    assert!(dead
        .iter()
        .all(|(_, reason)| reason.as_deref().is_some_and(|r| !r.is_empty())));
    worker.stop().await;
    bus.delete().await;
}

/// Issue 17: a dead-lettered delivery is acked on its own as soon as its
/// copy is confirmed, so SIGKILL mid-stream (prefetch 4,096) dead-letters
/// again at most a handful of what was dead-lettered already.
#[tokio::test]
async fn sigkill_while_dead_lettering_makes_at_most_a_handful_of_extra_copies() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    // Enough to be killed mid-stream (dead letters go at ~600/s).
    let n = 5_000;
    let poison: Vec<Vec<u8>> = (0..n)
        .map(|i| format!(r#"{{"id": "poison{i}", "ra": 400, "dec": 0}}"#).into_bytes())
        .collect();
    bus.publish_many(&poison).await;
    let dead = bus.topology.dead_queue();
    let mut worker = spawn_binary(&db, &bus, "worker");
    eventually("some dead letters", LONG, || async {
        (bus.queue_len(&dead).await > 500).then_some(())
    })
    .await;
    worker.kill().await.expect("SIGKILL");
    let before = bus.queue_len(&dead).await;
    assert!(
        before < n,
        "killed mid-stream ({before} of {n} dead-lettered)"
    );

    let mut worker = spawn_binary(&db, &bus, "worker");
    eventually("the queue drained", LONG, || async {
        (bus.queue_len(&bus.topology.queue).await == 0 && bus.queue_len(&dead).await >= n)
            .then_some(())
    })
    .await;
    let status = sigterm(&mut worker).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let copies = bus.ready_stable_of(&dead).await;
    let extra = copies - n;
    eprintln!("dead letters after SIGKILL: {copies} for {n} poison messages ({extra} extra)");
    assert!(extra <= 10, "{extra} extra dead-letter copies");
    bus.delete().await;
}
