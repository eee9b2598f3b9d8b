//! `thumbnails run` as a child process with its JSON log lines collected,
//! and the clients the fault tests drive it with: SkyPortal's plain
//! inserts, uploads sent again on 503, and a listener of
//! `thumbnail.stored`.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

use crate::helpers::*;
use crate::sidecar::app::b64;
use thumbnails::bus::Topology;

/// The upload token of [`Service`].
pub const TOKEN: &str = "faults-uploader";
const LONG: Duration = Duration::from_secs(300);

/// The service's JSON log lines, as they come.
pub type Logs = Arc<Mutex<Vec<Value>>>;

pub fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

pub fn timestamp(line: &Value) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str()?).ok()?;
    Some(SystemTime::from(t))
}

/// The log lines whose message is `text`.
pub fn lines_saying(logs: &Logs, text: &str) -> Vec<Value> {
    logs.lock()
        .expect("logs")
        .iter()
        .filter(|l| message(l) == text)
        .cloned()
        .collect()
}

/// `thumbnails run` with its logs.
pub struct Service {
    pub child: Child,
    pub logs: Logs,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Service {
    /// `run` on `database_url` with `bus`'s names (and `amqp_url`, when
    /// not the machine's broker), an upload token, JSON logs at INFO, no
    /// grayscale pass and no sweep (it would heal a loss and hide it), the
    /// feed polling every second; returns once it answers `/healthz`.
    pub async fn start(database_url: &str, bus: &TestBus, amqp_url: Option<&str>) -> Self {
        Self::start_with(database_url, bus, amqp_url, &[]).await
    }

    /// [`Self::start`] with more settings (`THUMBNAILS_...` variables,
    /// which win over the ones above).
    pub async fn start_with(
        database_url: &str,
        bus: &TestBus,
        amqp_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(&tokens, format!("[{{token: {TOKEN}, scopes: [upload]}}]"))
            .expect("tokens file");
        let port = free_port();
        let mut command = crate::cli::service("run", database_url, bus, port);
        if let Some(url) = amqp_url {
            command.env("THUMBNAILS_AMQP__URL", url);
        }
        let mut child = command
            .env("THUMBNAILS_HTTP__TOKENS_FILE", &tokens)
            .env("THUMBNAILS_STORAGE__ROOT", dir.path().join("storage"))
            .env("THUMBNAILS_LOG__FORMAT", "json")
            .env("THUMBNAILS_GRAYSCALE__ENABLED", "false")
            .env("THUMBNAILS_FEED__POLL_INTERVAL_S", "1")
            .env("THUMBNAILS_RECONCILE__INTERVAL_S", "86400")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn thumbnails run");
        let logs: Logs = Arc::default();
        let stderr = child.stderr.take().expect("stderr");
        let keep = logs.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    keep.lock().expect("logs").push(v);
                }
            }
        });
        wait_healthy(port).await;
        Self {
            child,
            logs,
            port,
            _dir: dir,
        }
    }

    /// SIGTERM; asserts a clean exit.
    pub async fn stop(mut self) {
        let status = sigterm(&mut self.child).await;
        assert!(status.success(), "SIGTERM exits 0, got {status}");
    }
}

/// Waits (at most `within`) until the feed records inserts (earlier ones
/// are the sweep's).
pub async fn feed_enabled(db: &TestDb, within: Duration) {
    eventually("the feed switched on", within, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails_feed_state WHERE enabled")
            .await
            == 1)
            .then_some(())
    })
    .await;
}

/// Every row id announced by `thumbnail.stored`, from a listener queue
/// bound on `channel` (a connection that never publishes: a broker under
/// an alarm blocks publishing connections only).
pub async fn collect_stored(channel: &Channel, topology: &Topology) -> Arc<Mutex<HashSet<i64>>> {
    let queue = declare_stored_listener(channel, topology)
        .await
        .expect("stored listener");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "faults-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume thumbnail.stored");
    let ids: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let keep = ids.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let Ok(event) = serde_json::from_slice::<Value>(&delivery.data) else {
                continue;
            };
            let mut ids = keep.lock().expect("ids");
            for t in event["thumbnails"].as_array().into_iter().flatten() {
                if let Some(id) = t["id"].as_i64() {
                    ids.insert(id);
                }
            }
        }
    });
    ids
}

/// Objects inserted the way SkyPortal does (no event), retried through
/// outages as a client would (`ON CONFLICT DO NOTHING`: a retry of an
/// insert that did commit changes nothing).
pub async fn insert_objs(url: &str, prefix: &str, range: std::ops::Range<usize>) {
    let values = range
        .map(|i| {
            format!(
                "('{prefix}-{i}', {}, 12.5, false, gen_random_uuid()::text, now(), now())",
                10.0 + i as f64 / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified) VALUES {values} ON CONFLICT (id) DO NOTHING"
    );
    eventually("objs inserted", LONG, || async {
        let conn = thumbnails::store::connect(url, 1).await.ok()?;
        conn.execute_unprepared(&sql).await.ok().map(|_| ())
    })
    .await;
}

/// One PNG upload of type `new`, sent again on 503 (the database away) or
/// a refused connection, as a client would; returns how long the accepted
/// attempt took.
pub async fn upload(client: &reqwest::Client, port: u16, obj_id: &str, png: &[u8]) -> Duration {
    let request = json!({"obj_id": obj_id, "ttype": "new", "data": b64(png)}).to_string();
    eventually("the upload accepted", LONG, || async {
        let sent = std::time::Instant::now();
        let answer = client
            .post(format!("http://127.0.0.1:{port}/api/thumbnail"))
            .header("Authorization", format!("token {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(request.clone())
            .send()
            .await
            .ok()?;
        match answer.status() {
            StatusCode::OK => Some(sent.elapsed()),
            StatusCode::SERVICE_UNAVAILABLE => None,
            other => panic!("upload of {obj_id}: {other}: {:?}", answer.text().await),
        }
    })
    .await
}

/// Every row of `db`, by id, is in `announced`.
pub async fn unannounced(db: &TestDb, announced: &Mutex<HashSet<i64>>) -> usize {
    let ids = db
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT id FROM thumbnails",
        ))
        .await
        .expect("ids");
    let announced = announced.lock().expect("ids");
    ids.iter()
        .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
        .filter(|id| !announced.contains(&i64::from(*id)))
        .count()
}

/// `thumbnails sidecar` as a user starts it, from a config file of its own
/// in a temporary folder, with `tokens` (`(token, scope)`), its stderr at
/// `RUST_LOG=trace` kept in a file: for what must never reach the logs.
pub struct TracedSidecar {
    pub db: TestDb,
    pub bus: TestBus,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl TracedSidecar {
    /// Starts it; returns once it answers `/healthz`.
    pub async fn start(tokens: &[(&str, &str)]) -> Self {
        let (db, bus) = (TestDb::new().await, TestBus::new().await);
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let tokens: String = tokens
            .iter()
            .map(|(token, scope)| format!("    - {{token: \"{token}\", scopes: [{scope}]}}\n"))
            .collect();
        let config = format!(
            "database: {{url: \"{}\"}}\namqp: {{exchange: \"{}\", queue: \"{}\", cutouts_queue: \"{}\"}}\n\
             http:\n  listen: \"127.0.0.1:{port}\"\n  tokens:\n{tokens}\
             storage: {{root: \"{}\"}}\n",
            db.url,
            bus.topology.exchange,
            bus.topology.queue,
            bus.cutouts.queue,
            dir.path().join("store").display()
        );
        std::fs::write(dir.path().join("config.yaml"), config).expect("config");
        let log = std::fs::File::create(dir.path().join("log.txt")).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_thumbnails"))
            .args(["--config", "config.yaml", "sidecar"])
            .current_dir(dir.path())
            .env("RUST_LOG", "trace")
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start thumbnails sidecar");
        wait_healthy(port).await;
        Self {
            db,
            bus,
            port,
            dir,
            child,
        }
    }

    /// SIGTERM (the one shutdown path: asserts exit 0); returns its log.
    pub async fn stop(mut self) -> String {
        let status = sigterm(&mut self.child).await;
        assert!(status.success(), "{status}");
        self.bus.delete().await;
        std::fs::read_to_string(self.dir.path().join("log.txt")).expect("log")
    }
}
