//! The benchmark: `cargo build --release --bins && target/release/bench all`
//! (or `scripts/bench`). Runs against the local PostgreSQL and RabbitMQ, in a
//! database and exchange of its own, and prints one line per figure:
//! `bench <name>: <figure> <unit>`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use thumbnails::bus::{self, Publisher, Topology, ROUTING_OBJ_CREATED};
use thumbnails::store;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "thumbnails benchmark (local PostgreSQL and RabbitMQ)")]
struct Cli {
    /// Server URL of PostgreSQL (a database is created and dropped in it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Worker throughput and peak RSS for N queued events.
    Worker {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        /// Serve a local PS1 stand-in answering after this many ms (none if absent).
        #[arg(long)]
        ps1_delay_ms: Option<u64>,
    },
    /// Worker rate at N=10000 and N=100000: the rate must not fall as the table grows.
    Scale,
    /// Everything, with the defaults.
    All,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    thumbnails::telemetry::init(thumbnails::config::LogFormat::Text);
    let cli = Cli::parse();
    match &cli.what {
        What::Worker { n, ps1_delay_ms } => {
            bench_worker(&cli, *n, *ps1_delay_ms, "worker").await?;
        }
        What::Scale => scale(&cli).await?,
        What::All => {
            scale(&cli).await?;
            bench_worker(&cli, 100_000, Some(200), "worker-ps1-200ms").await?;
        }
    }
    Ok(())
}

async fn scale(cli: &Cli) -> anyhow::Result<()> {
    let small = bench_worker(cli, 10_000, None, "worker-10k").await?;
    let large = bench_worker(cli, 100_000, None, "worker-100k").await?;
    println!("bench worker-100k-vs-10k: {:.1} %", 100.0 * large / small);
    Ok(())
}

/// A database of the benchmark's own, dropped at the end.
struct BenchDb {
    admin: DatabaseConnection,
    name: String,
    url: String,
    db: DatabaseConnection,
}

impl BenchDb {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let admin = Database::connect(format!("{server}/postgres")).await?;
        let name = format!("thumbnails_bench_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = format!("{server}/{name}");
        let db = store::connect(&url, 4).await?;
        store::migrate(&db).await?;
        Ok(Self {
            admin,
            name,
            url,
            db,
        })
    }

    async fn scalar(&self, sql: &str) -> anyhow::Result<f64> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await?
            .context("no row")?;
        Ok(row.try_get_by_index::<Option<f64>>(0)?.unwrap_or(0.0))
    }

    async fn drop_db(self) {
        let _ = self.db.close().await;
        let _ = self
            .admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await;
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Peak resident set size of a process, from /proc.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn sigterm(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    Ok(())
}

/// Queues `n` events, then times the release worker from its first to its
/// last commit. Returns objects/s.
async fn bench_worker(
    cli: &Cli,
    n: usize,
    ps1_delay_ms: Option<u64>,
    name: &str,
) -> anyhow::Result<f64> {
    let db = BenchDb::create(&cli.pg).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topology = Topology::new(&format!("bench-{id}"), &format!("bench-{id}.object-created"));
    let conn = bus::connect(&cli.amqp, "thumbnails-bench").await?;
    let channel = conn.create_channel().await?;
    bus::declare(&channel, &topology).await?;
    let publisher = Publisher::open(&conn, &topology.exchange).await?;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            serde_json::to_vec(&serde_json::json!({
                "id": format!("ZTF{i:09}"),
                "ra": (i as f64 * 0.0137) % 360.0,
                "dec": ((i as f64 * 0.0071) % 180.0) - 90.0,
            }))
            .unwrap_or_default()
        })
        .collect();
    for chunk in bodies.chunks(1000) {
        publisher
            .publish_many(ROUTING_OBJ_CREATED, chunk, true)
            .await?;
    }
    let stop = CancellationToken::new();
    let ps1_url = match ps1_delay_ms {
        Some(ms) => {
            thumbnails::testkit::serve_ps1(Duration::from_millis(ms), stop.clone()).await?
        }
        None => String::new(),
    };
    let mut worker = Command::new(sibling_binary("thumbnails")?)
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"))
        .arg("worker")
        .env("THUMBNAILS_DATABASE__URL", &db.url)
        .env("THUMBNAILS_AMQP__URL", &cli.amqp)
        .env("THUMBNAILS_AMQP__EXCHANGE", &topology.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &topology.queue)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", &ps1_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = worker.id().context("worker pid")?;
    let started = Instant::now();
    let want = 3.0 * n as f64;
    loop {
        // max(id) is an index probe; count(*) only once it says "done"
        // (a count every poll would load the database being measured).
        let top = db.scalar("SELECT max(id)::float8 FROM thumbnails").await?;
        let rows = if top >= want {
            db.scalar("SELECT count(*)::float8 FROM thumbnails").await?
        } else {
            top
        };
        if rows >= want {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("worker did not finish in 15 minutes ({rows} of {want} rows)");
        }
        if let Some(status) = worker.try_wait()? {
            bail!("worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let span = db
        .scalar("SELECT EXTRACT(EPOCH FROM max(modified) - min(created_at))::float8 FROM thumbnails")
        .await?;
    sigterm(&mut worker).await?;
    stop.cancel();
    let rate = n as f64 / span.max(1e-3);
    println!("bench {name}: {rate:.0} objects/s");
    println!("bench {name}-rows: {:.0} rows/s", 3.0 * rate);
    println!("bench {name}-peak-rss: {rss:.1} MiB");
    for q in [topology.queue.clone(), topology.dead_queue()] {
        let _ = channel
            .queue_delete(q.as_str().into(), Default::default())
            .await;
    }
    for e in [topology.exchange.clone(), topology.dead_exchange()] {
        let _ = channel
            .exchange_delete(e.as_str().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    db.drop_db().await;
    Ok(rate)
}
