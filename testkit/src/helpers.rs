//! Shared test helpers: every test gets its own database, its own exchange
//! and queue names, and its own PS1 stand-in.

use std::future::Future;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use thumbnails::bus::{self, Publisher, Topology, ROUTING_OBJ_CREATED, ROUTING_THUMBNAIL_STORED};
use thumbnails::config::Config;
use thumbnails::store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a service on `port` answers `GET /healthz` with success.
pub async fn wait_healthy(port: u16) {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    eventually("/healthz answers", Duration::from_secs(60), || async {
        let r = http.get(&url).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

/// A fresh database, migrated; dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub db: DatabaseConnection,
    /// The server's `postgres` database, which drops this one.
    admin: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let db = Self::empty().await;
        store::migrate(&db.db).await.expect("migrate");
        db
    }

    /// Takes over a database something else created (dropped like the others).
    pub async fn attach(name: &str, url: &str) -> Self {
        let db = store::connect(url, 2).await.expect("connect");
        Self {
            name: name.into(),
            url: url.into(),
            db,
            admin: PG_ADMIN.into(),
        }
    }

    /// A fresh migrated database named `<prefix>_<uuid>` on `server`
    /// (`postgres://user@host:port`); errors are returned, not panicked on
    /// (the benchmark's databases).
    pub async fn create_on(server: &str, prefix: &str) -> anyhow::Result<Self> {
        let admin = format!("{server}/postgres");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        Database::connect(&admin)
            .await?
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = format!("{server}/{name}");
        let me = Self {
            db: store::connect(&url, 4).await?,
            name,
            url,
            admin,
        };
        store::migrate(&me.db).await?;
        Ok(me)
    }

    /// The first column of the first row as a float (NULL = 0).
    pub async fn scalar_f64(&self, sql: &str) -> anyhow::Result<f64> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
        Ok(row.try_get_by_index::<Option<f64>>(0)?.unwrap_or(0.0))
    }

    /// A fresh database without the schema.
    pub async fn empty() -> Self {
        let name = format!("thumbnails_it_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(PG_ADMIN).await.expect("admin connection");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let db = store::connect(&url, 10).await.expect("connect");
        Self {
            name,
            url,
            db,
            admin: PG_ADMIN.into(),
        }
    }

    /// A database outage: new connections are refused and the open
    /// sessions in this database are ended.
    pub async fn refuse_connections(&self) {
        let admin = self.set_allow_connections(false).await;
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                self.name
            ))
            .await
            .expect("terminate backends");
    }

    /// Ends [`TestDb::refuse_connections`].
    pub async fn allow_connections(&self) {
        self.set_allow_connections(true).await;
    }

    async fn set_allow_connections(&self, allow: bool) -> DatabaseConnection {
        let admin = Database::connect(PG_ADMIN).await.expect("admin");
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                self.name
            ))
            .await
            .expect("ALTER DATABASE .. ALLOW_CONNECTIONS");
        admin
    }

    /// An object at ra 10, dec 20.
    pub async fn add_obj(&self, id: &str) {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
                 VALUES ($1, 10.0, 20.0, false, 'k', now() at time zone 'utc', now() at time zone 'utc')",
                [id.into()],
            ))
            .await
            .expect("insert obj");
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect(sql)
            .expect("one row");
        row.try_get_by_index::<i64>(0).expect("i64 column")
    }

    /// Makes every later commit that touched `thumbnails` fail (a deferred
    /// constraint trigger), for tests of what a failed commit undoes.
    pub async fn refuse_commits(&self) {
        self.db
            .execute_unprepared(
                "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
                 CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT OR UPDATE ON thumbnails
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit();",
            )
            .await
            .expect("trigger");
    }

    /// Every thumbnail's `file_uri` (rows without one left out).
    pub async fn file_uris(&self) -> Vec<String> {
        self.db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT file_uri FROM thumbnails WHERE file_uri IS NOT NULL".to_owned(),
            ))
            .await
            .expect("select file_uri")
            .iter()
            .map(|r| r.try_get_by_index(0).expect("file_uri"))
            .collect()
    }

    /// `(obj_id, type, public_url)` of every thumbnail, sorted.
    pub async fn thumbnails(&self) -> Vec<(String, String, Option<String>)> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT obj_id, type::text, public_url FROM thumbnails ORDER BY obj_id, type::text"
                    .to_owned(),
            ))
            .await
            .expect("select thumbnails");
        rows.into_iter()
            .map(|r| {
                (
                    r.try_get_by_index(0).expect("obj_id"),
                    r.try_get_by_index(1).expect("type"),
                    r.try_get_by_index(2).expect("public_url"),
                )
            })
            .collect()
    }
}

/// Runs `clean_up` to the end on a small runtime on a thread of its own:
/// for `Drop`, which cannot await (and may run inside another runtime).
/// Best effort: a runtime that cannot start does nothing.
pub fn clean_up_in_drop(clean_up: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(clean_up);
        }
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin.clone());
        clean_up_in_drop(async move {
            let mut opts = sea_orm::ConnectOptions::new(admin_url);
            opts.sqlx_logging(false);
            if let Ok(admin) = Database::connect(opts).await {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// Unique exchange and queue names, deleted on drop.
pub struct TestBus {
    pub topology: Topology,
    /// The alert cutouts queue's names (declared too).
    pub cutouts: Topology,
    pub _conn: Connection,
    pub channel: Channel,
    pub publisher: Publisher,
}

impl TestBus {
    pub async fn new() -> Self {
        Self::on(AMQP).await
    }

    /// [`Self::new`] on another broker (`url`).
    pub async fn on(url: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topology = Topology::new(&format!("it-{id}"), &format!("it-{id}.object-created"));
        let conn = bus::connect(url, &format!("it-test {id}"))
            .await
            .expect("amqp");
        let channel = conn.create_channel().await.expect("channel");
        bus::declare(&channel, &topology).await.expect("declare");
        let cutouts = Topology::cutouts(&topology.exchange, &format!("it-{id}.alert-cutouts"));
        bus::declare(&channel, &cutouts)
            .await
            .expect("declare cutouts");
        let publisher = Publisher::open(&conn, &topology.exchange)
            .await
            .expect("publisher");
        Self {
            topology,
            cutouts,
            _conn: conn,
            channel,
            publisher,
        }
    }

    pub fn config(&self, db: &TestDb, ps1_lookup_url: &str) -> Config {
        let mut c = Config::default();
        c.database.url = db.url.clone();
        c.amqp.url = AMQP.into();
        c.amqp.exchange = self.topology.exchange.clone();
        c.amqp.queue = self.topology.queue.clone();
        c.amqp.cutouts_queue = self.cutouts.queue.clone();
        c.surveys.ps1.lookup_url = ps1_lookup_url.into();
        c.surveys.ps1.timeout_s = 1.0;
        c
    }

    pub async fn publish(&self, body: &[u8]) {
        self.publisher
            .publish_json(ROUTING_OBJ_CREATED, body, true)
            .await
            .expect("publish obj.created");
    }

    pub async fn publish_many(&self, bodies: &[Vec<u8>]) {
        for chunk in bodies.chunks(500) {
            self.publisher
                .publish_many(ROUTING_OBJ_CREATED, chunk, true)
                .await
                .expect("publish obj.created");
        }
    }

    /// A queue that collects `thumbnail.stored` events.
    pub async fn listen_stored(&self) -> String {
        let name = format!("{}.stored-listener", self.topology.queue);
        self.channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare listener");
        self.channel
            .queue_bind(
                name.as_str().into(),
                self.topology.exchange.as_str().into(),
                ROUTING_THUMBNAIL_STORED.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind listener");
        name
    }

    /// Takes every message currently in `queue`: (body, error header).
    pub async fn drain(&self, queue: &str) -> Vec<(Vec<u8>, Option<String>)> {
        let mut out = Vec::new();
        while let Some(msg) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            let reason = msg
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-thumbnails-error").cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => Some(s.to_string()),
                    _ => None,
                });
            out.push((msg.delivery.data.clone(), reason));
            msg.delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
        out
    }

    /// Drains `queue` (a dead-letter queue) and returns each message's
    /// `x-thumbnails-error` reason.
    pub async fn dead_reasons(&self, queue: &str) -> Vec<String> {
        self.drain(queue)
            .await
            .into_iter()
            .filter_map(|(_, reason)| reason)
            .collect()
    }

    pub async fn queue_len(&self, queue: &str) -> u32 {
        bus::passive_declare(&self.channel, queue)
            .await
            .expect("passive declare")
            .message_count()
    }

    /// The worker queue's ready count once it holds still (three equal
    /// reads 100 ms apart): after a consumer stops, the broker returns its
    /// unacked deliveries asynchronously. (rabbitmqctl's queue figures lag
    /// behind for quorum queues, so the queue itself is asked.)
    pub async fn ready_stable(&self) -> u32 {
        self.ready_stable_of(&self.topology.queue).await
    }

    /// [`Self::ready_stable`] of any queue.
    pub async fn ready_stable_of(&self, queue: &str) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let (mut last, mut same) = (u32::MAX, 0);
        loop {
            let n = self.queue_len(queue).await;
            same = if n == last { same + 1 } else { 1 };
            last = n;
            if same >= 3 {
                return n;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue length never settled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until everything published so far has been delivered to the
    /// worker (nothing ready). Stopping the worker then finishes and acks it.
    pub async fn delivered(&self) {
        eventually("everything delivered", Duration::from_secs(60), || async {
            (self.queue_len(&self.topology.queue).await == 0).then_some(())
        })
        .await;
    }

    pub async fn delete(&self) {
        teardown(&self.channel, &self.topology).await;
        undeclare(&self.channel, &self.cutouts).await;
    }
}

/// Deletes a test's topology and its `thumbnail.stored` listener queue.
async fn teardown(channel: &Channel, t: &Topology) {
    let listener = format!("{}.stored-listener", t.queue);
    let _ = channel
        .queue_delete(listener.as_str().into(), QueueDeleteOptions::default())
        .await;
    undeclare(channel, t).await;
}

impl Drop for TestBus {
    /// Also on a failed test: the queues and exchanges go.
    fn drop(&mut self) {
        let t = self.topology.clone();
        let c = self.cutouts.clone();
        clean_up_in_drop(async move {
            let Ok(conn) = bus::connect(AMQP, "it-cleanup").await else {
                return;
            };
            if let Ok(ch) = conn.create_channel().await {
                teardown(&ch, &t).await;
                undeclare(&ch, &c).await;
            }
            let _ = conn.close(200, "cleanup".into()).await;
        });
    }
}

/// A worker running in this process until [`RunningWorker::stop`].
pub struct RunningWorker {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), thumbnails::worker::WorkerError>>,
}

impl RunningWorker {
    pub async fn start(config: &Config) -> Self {
        let shutdown = CancellationToken::new();
        let db = store::connect(&config.database.url, 10)
            .await
            .expect("connect");
        let config = config.clone();
        let s = shutdown.clone();
        let task = tokio::spawn(async move { thumbnails::worker::run(&config, db, s).await });
        Self { shutdown, task }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("worker stops within a minute")
            .expect("worker task joins")
            .expect("worker exits cleanly");
    }
}

/// A PS1 stand-in (see [`crate::ps1`]), stopped on drop.
pub struct Ps1StandIn {
    pub url: String,
    pub stats: std::sync::Arc<crate::ps1::Ps1Stats>,
    stop: CancellationToken,
}

impl Ps1StandIn {
    /// Answers by RA (see `Ps1Mode::ByRa`).
    pub async fn start() -> Self {
        Self::with(crate::ps1::Ps1Mode::ByRa).await
    }

    pub async fn with(mode: crate::ps1::Ps1Mode) -> Self {
        let stop = CancellationToken::new();
        let (url, stats) = crate::ps1::serve_ps1_counted(mode, stop.clone())
            .await
            .expect("stand-in");
        Self { url, stats, stop }
    }

    /// Every lookup finds an image, after `delay`.
    pub async fn slow(delay: Duration) -> Self {
        Self::with(crate::ps1::Ps1Mode::Image { delay }).await
    }
}

impl Drop for Ps1StandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The JSON body of an `obj.created` event.
pub fn event(id: &str, ra: f64, dec: f64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"id": id, "ra": ra, "dec": dec})).expect("json")
}

/// Sends SIGTERM (the one shutdown path) and waits, at most a minute, for
/// the exit.
pub async fn sigterm(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    try_sigterm(child)
        .await
        .expect("SIGTERM, then an exit within a minute")
}

/// [`sigterm`] with errors returned (the benchmark's).
pub async fn try_sigterm(
    child: &mut tokio::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        let sent = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
    }
    Ok(tokio::time::timeout(Duration::from_secs(60), child.wait()).await??)
}

/// A local port nothing listens on (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Deletes the queues and exchanges [`thumbnails::bus::declare`] made, best effort (for
/// benchmarks and tests that declare throwaway names; never for production
/// names, whose queues hold work).
pub async fn undeclare(channel: &Channel, t: &Topology) {
    for q in [t.queue.clone(), t.dead_queue()] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in [t.exchange.clone(), t.dead_exchange()] {
        let _ = channel
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// Declares a quorum queue `<queue>.stored-listener` bound to
/// `thumbnail.stored`, as a frontend's would be; returns its name.
pub async fn declare_stored_listener(
    channel: &Channel,
    topology: &Topology,
) -> Result<String, lapin::Error> {
    let name = format!("{}.stored-listener", topology.queue);
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            name.as_str().into(),
            topology.exchange.as_str().into(),
            ROUTING_THUMBNAIL_STORED.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}
