//! The broker as a cluster: quorum dead-letter queues (and the migration of
//! classic ones) on the default node, and node loss on the local 3-node
//! cluster of `scripts/rabbitmq-cluster` (docs/cluster.md). The node-loss
//! test needs root and takes minutes, so it is opt-in:
//! `cargo test --test it cluster -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;
use thumbnails::bus::dead_letters::{migrate_dead_queue, DeadQueueKind};
use thumbnails::bus::{self, BusError, BusLink, Topology, ROUTING_OBJ_CREATED};
use thumbnails::config::Config;
use tokio::process::Command;

use crate::helpers::*;

// ---------------------------------------------------------------------------
// Dead-letter queues on the default node (fast; part of the normal suite)

fn header_of(props: &lapin::BasicProperties, key: &str) -> Option<String> {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key).cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            _ => None,
        })
}

#[tokio::test]
async fn a_classic_dead_letter_queue_is_named_at_start_and_migrated_with_its_messages() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topology = Topology::new(&format!("it-{id}"), &format!("it-{id}.object-created"));
    let conn = bus::connect(AMQP, "it-dead-letters").await.expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    // What older versions declared: a classic dead queue, holding letters.
    channel
        .queue_declare(
            topology.dead_queue().as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("classic dead queue");
    let publisher = bus::Publisher::open(&conn, "").await.expect("publisher");
    for i in 0..5 {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-thumbnails-error".into(),
            AMQPValue::LongString(format!("reason {i}").into()),
        );
        publisher
            .publish(bus::publisher::Outgoing {
                exchange: "",
                routing_key: &topology.dead_queue(),
                body: format!("letter {i}").as_bytes(),
                headers,
                mandatory: true,
            })
            .await
            .expect("dead letter");
    }
    publisher.close().await;

    // The new declaration refuses it with one line naming the command.
    let fresh = conn.create_channel().await.expect("channel");
    let e = bus::declare(&fresh, &topology)
        .await
        .expect_err("a classic dead queue is refused");
    assert!(matches!(e, BusError::ClassicDeadQueue { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&topology.dead_queue()), "{text}");
    assert!(text.contains("thumbnails dead-letters migrate"), "{text}");
    // ... and so does the worker at start, instead of retrying forever.
    let db = TestDb::new().await;
    let mut config = Config::default();
    config.database.url = db.url.clone();
    config.amqp.url = AMQP.into();
    config.amqp.exchange = topology.exchange.clone();
    config.amqp.queue = topology.queue.clone();
    config.amqp.cutouts_queue = format!("it-{id}.alert-cutouts");
    config.surveys.ps1.lookup_url = String::new();
    let worker = tokio::time::timeout(
        Duration::from_secs(30),
        thumbnails::worker::run(&config, db.db.clone(), Default::default()),
    )
    .await
    .expect("the worker stops at once");
    let text = worker.expect_err("the worker refuses to start").to_string();
    assert!(text.contains("dead-letters migrate"), "{text}");

    // A dry run changes nothing.
    let dry = migrate_dead_queue(&conn, &topology, true)
        .await
        .expect("dry run");
    assert_eq!(
        (dry.found, dry.messages, dry.changed),
        (DeadQueueKind::Classic, 5, false)
    );
    let done = migrate_dead_queue(&conn, &topology, false)
        .await
        .expect("migrate");
    assert_eq!(
        (done.found, done.moved, done.changed),
        (DeadQueueKind::Classic, 5, true)
    );
    // Quorum now (declares pass), messages and reasons kept, in order.
    let check = conn.create_channel().await.expect("channel");
    bus::declare(&check, &topology)
        .await
        .expect("declares after the migration");
    let mut got = Vec::new();
    while let Some(msg) = check
        .basic_get(
            topology.dead_queue().as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .expect("get")
    {
        got.push((
            String::from_utf8_lossy(&msg.delivery.data).into_owned(),
            header_of(&msg.delivery.properties, "x-thumbnails-error"),
        ));
        msg.delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    let expected: Vec<(String, Option<String>)> = (0..5)
        .map(|i| (format!("letter {i}"), Some(format!("reason {i}"))))
        .collect();
    assert_eq!(got, expected);
    // Running it again finds a quorum queue and does nothing.
    let again = migrate_dead_queue(&conn, &topology, false)
        .await
        .expect("again");
    assert_eq!((again.found, again.changed), (DeadQueueKind::Quorum, false));
    undeclare(&check, &topology).await;
    let _ = check
        .queue_delete(
            format!("{}.migrating", topology.dead_queue())
                .as_str()
                .into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = conn.close(200, "done".into()).await;
}

/// What was found on RabbitMQ 3.10 (docs/cluster.md): the worker's
/// existing quorum queue cannot gain `x-quorum-initial-group-size` (406), so
/// its arguments stay as they were; a single node takes group size 3.
#[tokio::test]
async fn existing_queues_keep_their_arguments_and_one_node_takes_group_size_three() {
    let bus = TestBus::new().await;
    let conn = bus::connect(AMQP, "it-group-size").await.expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(bus.topology.dead_exchange().as_str().into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(bus.topology.dead_queue().as_str().into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(50));
    args.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongLongInt(3),
    );
    let e = channel
        .queue_declare(
            bus.topology.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect_err("an added x- argument is refused");
    assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
    // The dead queue (declared with group size 3 on this single node) is a
    // quorum queue: a classic one would refuse the quorum declaration.
    let kind = thumbnails::bus::dead_letters::dead_queue_kind(&conn, &bus.topology.dead_queue())
        .await
        .expect("kind");
    assert_eq!(kind, DeadQueueKind::Quorum);
    let _ = conn.close(200, "done".into()).await;
    bus.delete().await;
}

// ---------------------------------------------------------------------------
// Node loss on the local 3-node cluster (opt-in)

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-cluster");
const NODES: usize = 3;
const BASE_PORT: u16 = 5701;
/// docs/cluster.md: a quorum queue's members need some seconds after the
/// declaration before a node may die.
const SETTLE_AFTER_DECLARE: Duration = Duration::from_secs(20);
const RECONNECT_LIMIT: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(300);

fn node(i: usize) -> String {
    format!("thumbnails-{i}@localhost")
}

async fn script(args: &[&str]) -> String {
    rabbitmq_cluster(&[], args).await
}

/// `scripts/rabbitmq-cluster ARGS` with settings in `env` (another
/// `CLUSTER_*` for a cluster of its own); its stdout, or a failed test.
pub async fn rabbitmq_cluster(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(SCRIPT)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run scripts/rabbitmq-cluster");
    assert!(
        out.status.success(),
        "rabbitmq-cluster {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn ctl(i: usize, args: &[&str]) -> Option<String> {
    let out = Command::new("rabbitmqctl")
        .arg("-n")
        .arg(node(i))
        .arg("-q")
        .args(args)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Cluster {
    urls: String,
    brought_up: bool,
    down: BTreeSet<usize>,
}

impl Cluster {
    /// The cluster, started by the script unless every node is up already.
    async fn up() -> Self {
        let status = script(&["status"]).await;
        let running = status
            .lines()
            .filter(|l| l.starts_with("thumbnails-") && l.split_whitespace().nth(1) == Some("up"))
            .count();
        let brought_up = running < NODES;
        if brought_up {
            script(&["up"]).await;
        }
        let urls = script(&["urls"]).await.trim().to_string();
        Self {
            urls,
            brought_up,
            down: BTreeSet::new(),
        }
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (1..=NODES).filter(|i| !self.down.contains(i))
    }

    async fn kill(&mut self, i: usize) {
        assert!(self.down.is_empty(), "one node at a time");
        script(&["kill", &i.to_string()]).await;
        self.down.insert(i);
    }

    async fn start(&mut self, i: usize) {
        script(&["start", &i.to_string()]).await;
        self.down.remove(&i);
    }

    /// Asks the first live node that answers.
    async fn ctl(&self, args: &[&str]) -> Option<String> {
        for i in self.live() {
            if let Some(out) = ctl(i, args).await {
                return Some(out);
            }
        }
        None
    }

    /// The node index of a quorum queue's leader.
    async fn leader(&self, queue: &str) -> Option<usize> {
        let out = self.ctl(&["list_queues", "name", "leader"]).await?;
        let line = out.lines().find(|l| l.split('\t').next() == Some(queue))?;
        let leader = line.split('\t').nth(1)?;
        (1..=NODES).find(|&i| leader == node(i))
    }

    /// How many of the queue's members run (all three once a restarted
    /// node caught up).
    async fn members_online(&self, queue: &str) -> usize {
        let Some(out) = self.ctl(&["list_queues", "name", "online"]).await else {
            return 0;
        };
        out.lines()
            .find(|l| l.split('\t').next() == Some(queue))
            .map_or(0, |l| l.matches('@').count())
    }

    /// The node index of every connection with this name.
    async fn connection_nodes(&self, name: &str) -> Vec<usize> {
        let Some(out) = self
            .ctl(&["list_connections", "port", "client_properties"])
            .await
        else {
            return Vec::new();
        };
        let needle = format!("{{\"connection_name\",\"{name}\"}}");
        out.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split('\t').next()?.trim().parse::<u16>().ok())
            .map(|port| usize::from(port - BASE_PORT) + 1)
            .collect()
    }

    async fn finish(self) {
        if self.brought_up {
            script(&["down"]).await;
        }
    }
}

/// A fresh connection to whichever node answers (the test's own
/// connections must not die with a node either).
async fn on_cluster<T>(
    urls: &str,
    f: impl AsyncFnOnce(&Connection) -> Result<T, lapin::Error>,
) -> Option<T> {
    let conn = bus::connect(urls, "it-cluster probe").await.ok()?;
    let out = f(&conn).await.ok();
    let _ = conn.close(200, "probe".into()).await;
    out
}

/// (ready messages, consumers) of a queue.
async fn queue_state(urls: &str, queue: &str) -> Option<(u32, u32)> {
    on_cluster(urls, async |conn| {
        let ch = conn.create_channel().await?;
        let q = thumbnails::bus::passive_declare(&ch, queue).await?;
        let _ = ch.close(200, "probe".into()).await;
        Ok((q.message_count(), q.consumer_count()))
    })
    .await
}

/// Publishes until the broker confirms (a publish whose node died is sent
/// again: at least once); returns how many attempts failed.
async fn publish_until_confirmed(link: &BusLink, key: &str, body: &[u8]) -> u32 {
    let deadline = Instant::now() + LONG;
    let mut failed = 0;
    loop {
        match link.publish(key, body).await {
            Ok(()) => return failed,
            Err(e) => {
                assert!(Instant::now() < deadline, "publish never confirmed: {e}");
                failed += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Kills `victim`, then measures how long until `name`'s `expected`
/// connections are all on live nodes and the queue has `consumers` again.
async fn kill_and_time_reconnect(
    cluster: &mut Cluster,
    victim: usize,
    name: &str,
    expected: usize,
    queue: &str,
    consumers: u32,
) -> Duration {
    cluster.kill(victim).await;
    let killed = Instant::now();
    let urls = cluster.urls.clone();
    loop {
        let nodes = cluster.connection_nodes(name).await;
        let consuming = queue_state(&urls, queue).await.map(|(_, c)| c);
        if nodes.len() == expected
            && !nodes.contains(&victim)
            && consuming.is_some_and(|c| c >= consumers)
        {
            return killed.elapsed();
        }
        assert!(
            killed.elapsed() < RECONNECT_LIMIT,
            "not reconnected within {RECONNECT_LIMIT:?} after killing node {victim}: connections on {nodes:?}, consumers {consuming:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn restart_and_wait_in_sync(cluster: &mut Cluster, i: usize, queues: &[&str]) -> Duration {
    let t = Instant::now();
    cluster.start(i).await;
    for q in queues {
        eventually("every member online again", LONG, || async {
            (cluster.members_online(q).await == NODES).then_some(())
        })
        .await;
    }
    t.elapsed()
}

fn cluster_config(cluster: &Cluster, db: &TestDb, id: &str) -> Config {
    let mut c = Config::default();
    c.database.url = db.url.clone();
    c.amqp.url = cluster.urls.clone();
    c.amqp.exchange = format!("it-{id}");
    c.amqp.queue = format!("it-{id}.object-created");
    c.amqp.cutouts_queue = format!("it-{id}.alert-cutouts");
    c.surveys.ps1.lookup_url = String::new();
    c.grayscale.enabled = false;
    c
}

/// Deletes the test's queues and exchanges on the cluster.
async fn teardown(urls: &str, config: &Config, extra: &[String]) {
    let t = Topology::new(&config.amqp.exchange, &config.amqp.queue);
    let c = Topology::cutouts(&config.amqp.exchange, &config.amqp.cutouts_queue);
    let _ = on_cluster(urls, async |conn| {
        let ch = conn.create_channel().await?;
        for q in extra {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        undeclare(&ch, &c).await;
        undeclare(&ch, &t).await;
        Ok(())
    })
    .await;
}

/// A quorum queue on the cluster that collects `thumbnail.stored`.
async fn listen_stored(urls: &str, config: &Config) -> String {
    let topology = Topology::new(&config.amqp.exchange, &config.amqp.queue);
    on_cluster(urls, async |conn| {
        let ch = conn.create_channel().await?;
        declare_stored_listener(&ch, &topology).await
    })
    .await
    .expect("listener queue on the cluster")
}

/// Row ids announced in the listener queue (drained).
async fn announced_ids(urls: &str, queue: &str) -> Vec<i64> {
    on_cluster(urls, async |conn| {
        let ch = conn.create_channel().await?;
        let mut ids = Vec::new();
        while let Some(msg) = ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await?
        {
            let v: serde_json::Value =
                serde_json::from_slice(&msg.delivery.data).unwrap_or_default();
            if let Some(rows) = v["thumbnails"].as_array() {
                ids.extend(rows.iter().filter_map(|r| r["id"].as_i64()));
            }
            msg.delivery.ack(BasicAckOptions::default()).await?;
        }
        Ok(ids)
    })
    .await
    .unwrap_or_default()
}

#[derive(Debug, Default)]
struct Figures {
    workers_reconnect: Vec<Duration>,
    sidecar_reconnect: Vec<Duration>,
    node_restart: Vec<Duration>,
    workers_phase: Duration,
    sidecar_phase: Duration,
    publish_retries: u32,
    uploads_accepted: usize,
    uploads_refused: usize,
}

#[tokio::test]
#[ignore = "needs root and takes minutes: cargo test --test it cluster -- --ignored"]
async fn node_loss_is_survived_by_workers_and_the_sidecar() {
    let total = Instant::now();
    let mut cluster = Cluster::up().await;
    let mut figures = Figures::default();
    let (db_w, db_s) = (TestDb::new().await, TestDb::new().await);
    let id_w = uuid::Uuid::new_v4().simple().to_string();
    let id_s = uuid::Uuid::new_v4().simple().to_string();
    let config_w = cluster_config(&cluster, &db_w, &id_w);
    let mut config_s = cluster_config(&cluster, &db_s, &id_s);

    // Declare both phases' queues now: members need time before a node dies.
    let link = Arc::new(
        BusLink::connect(&config_w.amqp, "it-cluster publisher")
            .await
            .expect("topology on the cluster"),
    );
    let setup = BusLink::connect(&config_s.amqp, "it-cluster setup")
        .await
        .expect("sidecar topology on the cluster");
    setup.close().await;
    let listener = listen_stored(&cluster.urls, &config_s).await;
    let declared = Instant::now();

    // --- Phase 1: 20,000 obj.created through three workers ----------------
    let phase = Instant::now();
    let n = 20_000;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            event(
                &format!("node{i}"),
                (i % 359) as f64 + 0.25,
                (i % 89) as f64 - 44.5,
            )
        })
        .collect();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(RunningWorker::start(&config_w).await);
    }
    // Paced, so that events are still arriving during both losses.
    let publisher = {
        let link = link.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut failed = 0;
            for (k, chunk) in bodies.chunks(50).enumerate() {
                let due = start + Duration::from_millis(k as u64 * 50 * 1000 / 300);
                tokio::time::sleep_until(due.into()).await;
                let done = join_all(
                    chunk
                        .iter()
                        .map(|b| publish_until_confirmed(&link, ROUTING_OBJ_CREATED, b)),
                )
                .await;
                failed += done.iter().sum::<u32>();
            }
            failed
        })
    };
    let worker_conn = format!("thumbnails-worker {}", config_w.amqp.queue);
    let queue_w = config_w.amqp.queue.clone();
    tokio::time::sleep(SETTLE_AFTER_DECLARE.saturating_sub(declared.elapsed())).await;
    let objs = || async { db_w.scalar_i64("SELECT count(*) FROM objs").await };
    eventually("workers under way", LONG, || async {
        (objs().await > 1000).then_some(())
    })
    .await;

    // Loss 1: the node holding the queue's leader.
    let leader = eventually("the queue's leader", LONG, || cluster.leader(&queue_w)).await;
    let before = objs().await;
    let t = kill_and_time_reconnect(&mut cluster, leader, &worker_conn, 3, &queue_w, 3).await;
    eprintln!(
        "killed node {leader} (leader of the worker queue); workers consuming again after {t:?}"
    );
    figures.workers_reconnect.push(t);
    eventually("workers go on without the node", LONG, || async {
        (objs().await > before + 500).then_some(())
    })
    .await;
    let t = restart_and_wait_in_sync(&mut cluster, leader, &[&queue_w, &listener]).await;
    figures.node_restart.push(t);

    // Loss 2: a node a worker is connected to.
    let victim = eventually("a worker's node", LONG, || async {
        cluster
            .connection_nodes(&worker_conn)
            .await
            .first()
            .copied()
    })
    .await;
    let before = objs().await;
    let t = kill_and_time_reconnect(&mut cluster, victim, &worker_conn, 3, &queue_w, 3).await;
    eprintln!("killed node {victim} (a worker's node); workers consuming again after {t:?}");
    figures.workers_reconnect.push(t);
    eventually("workers go on without the node", LONG, || async {
        (objs().await > before + 500 || objs().await == n as i64).then_some(())
    })
    .await;
    let t = restart_and_wait_in_sync(&mut cluster, victim, &[&queue_w, &listener]).await;
    figures.node_restart.push(t);

    figures.publish_retries = publisher.await.expect("publisher");
    eventually("every object has its three rows", LONG, || async {
        (db_w.scalar_i64("SELECT count(*) FROM thumbnails").await == 3 * n as i64).then_some(())
    })
    .await;
    eventually("nothing left in the queue", LONG, || async {
        (queue_state(&cluster.urls, &queue_w).await?.0 == 0).then_some(())
    })
    .await;
    for w in workers {
        w.stop().await;
    }
    link.close().await;
    assert_eq!(db_w.scalar_i64("SELECT count(*) FROM objs").await, n as i64);
    assert_eq!(
        db_w.scalar_i64(
            "SELECT count(*) FROM (SELECT obj_id FROM thumbnails GROUP BY obj_id
             HAVING count(*) <> 3 OR count(DISTINCT type) <> 3
                 OR bool_or(type::text NOT IN ('sdss', 'ls', 'ps1'))) x"
        )
        .await,
        0,
        "exactly sdss, ls and ps1 for every object"
    );
    let dead = Topology::new(&config_w.amqp.exchange, &config_w.amqp.queue).dead_queue();
    assert_eq!(
        queue_state(&cluster.urls, &queue_w).await.map(|s| s.0),
        Some(0)
    );
    assert_eq!(
        queue_state(&cluster.urls, &dead).await.map(|s| s.0),
        Some(0)
    );
    figures.workers_phase = phase.elapsed();

    // --- Phase 2: uploads through the sidecar's outbox ----------------------
    let phase = Instant::now();
    let storage = tempfile::tempdir().expect("tempdir");
    config_s.storage.root = storage.path().to_path_buf();
    config_s.http.tokens = crate::sidecar::app::tokens();
    let uploads = 600;
    for i in 0..uploads {
        db_s.add_obj(&format!("up{i}")).await;
    }
    let listener_socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener_socket.local_addr().expect("addr"));
    let stop = tokio_util::sync::CancellationToken::new();
    let sidecar = {
        let (c, db, s) = (config_s.clone(), db_s.db.clone(), stop.clone());
        tokio::spawn(async move {
            thumbnails::sidecar::serve(
                listener_socket,
                &c,
                db,
                s,
                thumbnails::sidecar::ServeOptions {
                    outbox_interval: Duration::from_millis(200),
                    shutdown_deadline: Duration::from_secs(5),
                },
            )
            .await
        })
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let png = crate::sidecar::app::png(32, 32, true);
    let data = crate::sidecar::app::b64(&png);
    let uploader = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            let start = Instant::now();
            for i in 0..uploads {
                // 600 uploads over about 40 s.
                let due = start + Duration::from_millis(i as u64 * 40_000 / uploads as u64);
                tokio::time::sleep_until(due.into()).await;
                let answer = client
                    .post(format!("{base}/api/thumbnail"))
                    .header(
                        "Authorization",
                        format!("token {}", crate::sidecar::app::UPLOADER),
                    )
                    .header("Content-Type", "application/json")
                    .body(
                        serde_json::to_vec(&serde_json::json!({"obj_id": format!("up{i}"), "data": data, "ttype": "new"}))
                            .unwrap_or_default(),
                    )
                    .send()
                    .await;
                let Ok(answer) = answer else {
                    refused += 1;
                    continue;
                };
                let status = answer.status();
                let bytes = answer.bytes().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                match body["data"]["id"].as_i64() {
                    Some(id) if status.is_success() => accepted.push(id),
                    _ => {
                        assert!(
                            status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
                            "upload {i}: {status} {body}"
                        );
                        refused += 1;
                    }
                }
            }
            (accepted, refused)
        })
    };
    let sidecar_conn = format!("thumbnails-sidecar {}", config_s.amqp.exchange);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..2 {
        let victim = eventually("the sidecar's node", LONG, || async {
            cluster
                .connection_nodes(&sidecar_conn)
                .await
                .first()
                .copied()
        })
        .await;
        cluster.kill(victim).await;
        let killed = Instant::now();
        // The link reconnects on the next publish.
        let t = eventually("the sidecar on another node", RECONNECT_LIMIT, || async {
            let nodes = cluster.connection_nodes(&sidecar_conn).await;
            (!nodes.is_empty() && !nodes.contains(&victim)).then(|| killed.elapsed())
        })
        .await;
        eprintln!(
            "killed node {victim} (the sidecar's node); sidecar publishing again after {t:?}"
        );
        figures.sidecar_reconnect.push(t);
        let t = restart_and_wait_in_sync(&mut cluster, victim, &[&listener]).await;
        figures.node_restart.push(t);
    }
    let (accepted, refused) = uploader.await.expect("uploader");
    figures.uploads_accepted = accepted.len();
    figures.uploads_refused = refused;
    let mut announced = BTreeSet::new();
    let deadline = Instant::now() + LONG;
    loop {
        announced.extend(announced_ids(&cluster.urls, &listener).await);
        let missing: Vec<_> = accepted
            .iter()
            .filter(|id| !announced.contains(id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted uploads never announced: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually("the outbox emptied", LONG, || async {
        (db_s
            .scalar_i64("SELECT count(*) FROM thumbnail_outbox")
            .await
            == 0)
            .then_some(())
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), sidecar)
        .await
        .expect("sidecar stops in time")
        .expect("sidecar joins")
        .expect("sidecar exits cleanly");
    figures.sidecar_phase = phase.elapsed();

    teardown(&cluster.urls, &config_w, &[]).await;
    teardown(&cluster.urls, &config_s, &[listener]).await;
    eprintln!("figures: {figures:#?}; whole test {:?}", total.elapsed());
    cluster.finish().await;
}
