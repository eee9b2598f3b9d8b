//! The benchmark: `cargo build --release --bins && target/release/bench all`
//! (or `scripts/bench`). Runs against the local PostgreSQL and RabbitMQ, in a
//! database and exchange of its own, and prints one line per figure:
//! `bench <name>: <figure> <unit>`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, Database, Statement};
use testkit::helpers::TestDb;
use thumbnails::bus::{self, Publisher, Topology, ROUTING_OBJ_CREATED};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The service's allocator, so in-process figures (`cutouts`) are its own.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Bind a quorum queue to `thumbnail.stored`, as a frontend would.
        #[arg(long)]
        listener: bool,
    },
    /// Worker rate at N=10000 and N=100000: the rate must not fall as the table grows.
    Scale,
    /// C concurrent clients uploading 200x200 PNGs to the release sidecar.
    Sidecar {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        uploads: usize,
        /// `file` (a temporary folder) or `s3://BUCKET/PREFIX` (a fresh
        /// prefix under it; keys from the environment, as for cutouts-e2e).
        #[arg(long, default_value = "file")]
        storage: String,
    },
    /// Rewriting N old-form `ls` rows to the current template.
    Resurvey {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// The reconcile sweep over N complete objects (3 rows each): seconds.
    Sweep {
        #[arg(long, default_value_t = 1_000_000)]
        objs: usize,
    },
    /// Bulk INSERTs of N objs without the feed trigger, with it switched
    /// off and on; then the relay draining the outbox.
    FeedTrigger {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
    },
    /// `thumbnails migrate` on a SkyPortal-shaped table of N rows (a quarter
    /// of them duplicates): de-duplication and the per-survey indexes.
    Migrate {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Drawing the alert-cutout fixtures (tests/fixtures) in process for N
    /// seconds on T threads: stamps/s. Needs no PostgreSQL nor RabbitMQ.
    Cutouts {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Alerts published to RabbitMQ (JSON, the fixture's three gzipped
    /// cutouts each) before the release worker starts: alerts/s from its
    /// first to its last stamp row, and peak RSS.
    CutoutsE2e {
        #[arg(long, default_value_t = 20_000)]
        alerts: usize,
        /// `ztf`: JSON messages of a ZTF alert's three gzipped cutouts;
        /// `lsst`: Rubin packets (the three fixture packets replicated, each
        /// with an object of its own), as Rubin's stream sends them.
        #[arg(long, default_value = "ztf", value_parser = ["ztf", "lsst"])]
        survey: String,
        /// Where the worker writes: `file` (a temporary folder) or an
        /// `s3://BUCKET/PREFIX` URL (a fresh prefix is added under it),
        /// reached with the `THUMBNAILS_STORAGE__S3__*` or `AWS_*`
        /// variables of the environment (`eval "$(scripts/garage env)"`).
        #[arg(long, default_value = "file")]
        storage: String,
    },
    /// The store alone, no worker: N PUTs of the stamps `cutouts-e2e`
    /// writes (the ZTF fixture's three, drawn), C in flight, from this
    /// process into a fresh prefix of `s3://BUCKET/PREFIX`: PUTs/s, and the
    /// alerts/s (three stamps each) that rate caps an end-to-end run at.
    Bucket {
        #[arg(long, default_value_t = 30_000)]
        puts: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long)]
        storage: String,
        /// Make every object's bytes different (`cutouts-e2e`'s stamps are
        /// the same three images, which Garage stores once each).
        #[arg(long)]
        distinct: bool,
    },
    /// N objects inserted into objs in one statement, `thumbnails run` with
    /// the feed on, a PS1 stand-in answering after D ms: seconds until every
    /// object has a real PS1 URL, and the most lookups seen in flight.
    Ps1Burst {
        #[arg(long, default_value_t = 5_000)]
        n: usize,
        #[arg(long, default_value_t = 200)]
        delay_ms: u64,
    },
    /// Everything, with the defaults.
    All,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    thumbnails::telemetry::init(thumbnails::config::LogFormat::Text);
    let cli = Cli::parse();
    match &cli.what {
        What::Worker {
            n,
            ps1_delay_ms,
            listener,
        } => {
            let name = if *listener {
                "worker-listener"
            } else {
                "worker"
            };
            let run = WorkerRun {
                n: *n,
                ps1_delay_ms: *ps1_delay_ms,
                listener: *listener,
            };
            bench_worker(&cli, run, name).await?;
        }
        What::Scale => scale(&cli).await?,
        What::Sidecar {
            clients,
            uploads,
            storage,
        } => bench_sidecar(&cli, *clients, *uploads, storage).await?,
        What::Resurvey { rows } => bench_resurvey(&cli, *rows).await?,
        What::Sweep { objs } => bench_sweep(&cli, *objs).await?,
        What::Migrate { rows } => bench_migrate(&cli, *rows).await?,
        What::FeedTrigger { rows } => bench_feed_trigger(&cli, *rows).await?,
        What::Cutouts { seconds, threads } => bench_cutouts(*seconds, *threads)?,
        What::CutoutsE2e {
            alerts,
            survey,
            storage,
        } => bench_cutouts_e2e(&cli, *alerts, survey == "lsst", storage).await?,
        What::Bucket {
            puts,
            concurrency,
            storage,
            distinct,
        } => bench_bucket(*puts, *concurrency, storage, *distinct).await?,
        What::Ps1Burst { n, delay_ms } => bench_ps1_burst(&cli, *n, *delay_ms).await?,
        What::All => {
            scale(&cli).await?;
            let backlog = |listener| WorkerRun {
                n: 50_000,
                ps1_delay_ms: None,
                listener,
            };
            bench_worker(&cli, backlog(false), "worker-50k").await?;
            bench_worker(&cli, backlog(true), "worker-50k-listener").await?;
            let ps1 = WorkerRun {
                n: 100_000,
                ps1_delay_ms: Some(200),
                listener: false,
            };
            bench_worker(&cli, ps1, "worker-ps1-200ms").await?;
            bench_sidecar(&cli, 64, 20_000, "file").await?;
            bench_resurvey(&cli, 1_000_000).await?;
            bench_sweep(&cli, 1_000_000).await?;
            bench_migrate(&cli, 1_000_000).await?;
            bench_feed_trigger(&cli, 100_000).await?;
            bench_cutouts(5.0, 1)?;
            bench_cutouts(5.0, 2)?;
            bench_cutouts_e2e(&cli, 20_000, false, "file").await?;
            bench_cutouts_e2e(&cli, 20_000, true, "file").await?;
            bench_ps1_burst(&cli, 5_000, 200).await?;
        }
    }
    Ok(())
}

async fn scale(cli: &Cli) -> anyhow::Result<()> {
    let plain = |n| WorkerRun {
        n,
        ps1_delay_ms: None,
        listener: false,
    };
    let small = bench_worker(cli, plain(10_000), "worker-10k").await?;
    let large = bench_worker(cli, plain(100_000), "worker-100k").await?;
    println!("bench worker-100k-vs-10k: {:.1} %", 100.0 * large / small);
    Ok(())
}

/// The release `thumbnails <subcommand>` with the repository's config.yaml,
/// on the benchmark's database, broker and names (object queue `objects`,
/// alert queue `alerts`), quiet logs; callers add what they need.
fn thumbnails(
    subcommand: &str,
    database_url: &str,
    amqp: &str,
    objects: &Topology,
    alerts: &str,
) -> anyhow::Result<Command> {
    let mut c = Command::new(sibling_binary("thumbnails")?);
    c.arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml"))
        .arg(subcommand)
        .env("THUMBNAILS_DATABASE__URL", database_url)
        .env("THUMBNAILS_AMQP__URL", amqp)
        .env("THUMBNAILS_AMQP__EXCHANGE", &objects.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &objects.queue)
        .env("THUMBNAILS_AMQP__CUTOUTS_QUEUE", alerts)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(c)
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

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) a process has used, from /proc.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU time every core of the machine has spent busy, from /proc/stat.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((ticks.iter().take(8).sum::<f64>() - idle) / USER_HZ)
}

async fn sigterm(child: &mut Child) -> anyhow::Result<()> {
    testkit::helpers::try_sigterm(child).await.map(|_| ())
}

/// One worker measurement.
struct WorkerRun {
    /// Events queued before the worker starts.
    n: usize,
    /// A PS1 stand-in answering after this many ms; `None`: no lookup.
    ps1_delay_ms: Option<u64>,
    /// A quorum queue bound to `thumbnail.stored` receives the events.
    listener: bool,
}

/// CPU seconds used so far by every process whose command name is `comm`.
fn cpu_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .filter_map(process_cpu_secs)
        .sum()
}

/// CPU seconds of PostgreSQL's and RabbitMQ's processes.
fn service_cpu() -> (f64, f64) {
    (cpu_of("postgres"), cpu_of("beam.smp"))
}

/// Queues `n` events, then times the release worker from its first to its
/// last commit. Returns objects/s.
async fn bench_worker(cli: &Cli, run: WorkerRun, name: &str) -> anyhow::Result<f64> {
    let WorkerRun {
        n,
        ps1_delay_ms,
        listener,
    } = run;
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topology = Topology::new(
        &format!("bench-{id}"),
        &format!("bench-{id}.object-created"),
    );
    let conn = bus::connect(&cli.amqp, "thumbnails-bench").await?;
    let channel = conn.create_channel().await?;
    bus::declare(&channel, &topology).await?;
    let listener = match listener {
        true => Some(testkit::helpers::declare_stored_listener(&channel, &topology).await?),
        false => None,
    };
    let publisher = Publisher::open(&conn, &topology.exchange).await?;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let (ra, dec) = (
                (i as f64 * 0.0137) % 360.0,
                ((i as f64 * 0.0071) % 180.0) - 90.0,
            );
            testkit::helpers::event(&format!("ZTF{i:09}"), ra, dec)
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
            testkit::ps1::serve_ps1(
                testkit::ps1::Ps1Mode::Image {
                    delay: Duration::from_millis(ms),
                },
                stop.clone(),
            )
            .await?
        }
        None => String::new(),
    };
    let alerts = format!("{}.alert-cutouts", topology.queue);
    let mut worker = thumbnails("worker", &db.url, &cli.amqp, &topology, &alerts)?
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", &ps1_url)
        .spawn()?;
    let pid = worker.id().context("worker pid")?;
    let (pg_before, mq_before) = service_cpu();
    let started = Instant::now();
    let want = 3.0 * n as f64;
    loop {
        // max(id) is an index probe; count(*) only once it says "done"
        // (a count every poll would load the database being measured).
        let top = db
            .scalar_f64("SELECT max(id)::float8 FROM thumbnails")
            .await?;
        let rows = if top >= want {
            db.scalar_f64("SELECT count(*)::float8 FROM thumbnails")
                .await?
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
    let worker_cpu = process_cpu_secs(pid).unwrap_or(f64::NAN);
    let (pg_after, mq_after) = service_cpu();
    let span = db
        .scalar_f64(
            "SELECT EXTRACT(EPOCH FROM max(modified) - min(created_at))::float8 FROM thumbnails",
        )
        .await?;
    sigterm(&mut worker).await?;
    stop.cancel();
    let rate = n as f64 / span.max(1e-3);
    println!("bench {name}: {rate:.0} objects/s");
    println!("bench {name}-rows: {:.0} rows/s", 3.0 * rate);
    println!("bench {name}-peak-rss: {rss:.1} MiB");
    println!(
        "bench {name}-cpu: worker {worker_cpu:.1} s, postgres {:.1} s, rabbitmq {:.1} s (for {n} objects)",
        pg_after - pg_before,
        mq_after - mq_before
    );
    if let Some(queue) = &listener {
        let got = bus::passive_declare(&channel, queue).await?.message_count();
        println!("bench {name}-listener-messages: {got} (one per object: {n})");
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await?;
    }
    testkit::helpers::undeclare(&channel, &topology).await;
    testkit::helpers::undeclare(&channel, &Topology::cutouts(&topology.exchange, &alerts)).await;
    publisher.close().await;
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    drop(db);
    Ok(rate)
}

/// A 200x200 RGB PNG whose pixels depend on `seed`.
fn png_200(seed: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 200, 200);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    let data: Vec<u8> = (0..200 * 200 * 3)
        .map(|i: u32| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7)) % 251) as u8)
        .collect();
    w.write_image_data(&data)?;
    w.finish()?;
    Ok(out)
}

async fn bench_sidecar(
    cli: &Cli,
    clients: usize,
    uploads: usize,
    storage_url: &str,
) -> anyhow::Result<()> {
    use base64::Engine;
    let name = if storage_url == "file" {
        "sidecar"
    } else {
        "sidecar-s3"
    };
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
             SELECT 'up' || g, 1.0, 2.0, false, md5(g::text), now(), now()
             FROM generate_series(0, {}) g",
            uploads
        ))
        .await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let storage = std::env::temp_dir().join(format!("thumbnails-bench-{id}"));
    let port = testkit::helpers::free_port();
    let token = format!("bench-token-{id}");
    let config_path = std::env::temp_dir().join(format!("thumbnails-bench-{id}.yaml"));
    std::fs::write(
        &config_path,
        format!(
            "database:\n  url: {}\namqp:\n  url: \"{}\"\n  exchange: bench-{id}\n  queue: bench-{id}.object-created\nhttp:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - token: {token}\n      scopes: [upload]\nstorage:\n  root: {}\n",
            db.url,
            cli.amqp,
            storage.display()
        ),
    )?;
    let mut sidecar = Command::new(sibling_binary("thumbnails")?);
    if storage_url != "file" {
        let url = format!("{}/bench-{id}", storage_url.trim_end_matches('/'));
        sidecar.env("THUMBNAILS_STORAGE__URL", url);
    }
    let mut sidecar = sidecar
        .arg("--config")
        .arg(&config_path)
        .arg("sidecar")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(clients)
        .build()?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("sidecar did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The JSON after the obj_id, pre-encoded per image: the client only
    // writes each request's own obj_id in front (it shares the 2 cores with
    // the sidecar, so it should not re-escape 80 kB per request).
    let images: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            let data = base64::engine::general_purpose::STANDARD.encode(png_200(i)?);
            let tail = serde_json::to_string(&serde_json::json!({"ttype": "new", "data": data}))?;
            Ok::<_, anyhow::Error>(tail.trim_start_matches('{').as_bytes().to_vec())
        })
        .collect::<Result<_, _>>()?;
    let images = std::sync::Arc::new(images);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pid = sidecar.id().unwrap_or(0);
    let cpu_before = (process_cpu_secs(pid), machine_busy_secs());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, token, images, next) = (
            http.clone(),
            base.clone(),
            token.clone(),
            images.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= uploads {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let tail = &images[i % images.len()];
                let mut body = Vec::with_capacity(tail.len() + 32);
                body.extend_from_slice(format!("{{\"obj_id\":\"up{i}\",").as_bytes());
                body.extend_from_slice(tail);
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/thumbnail"))
                    .header("Authorization", format!("token {token}"))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!(
                        "upload {i}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(uploads);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let cpu_after = (process_cpu_secs(pid), machine_busy_secs());
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies
            .get(i)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "bench {name}: {:.0} uploads/s",
        uploads as f64 / elapsed.as_secs_f64()
    );
    println!("bench {name}-p50: {:.1} ms", pct(0.50));
    println!("bench {name}-p99: {:.1} ms", pct(0.99));
    // CPU per upload: the sidecar's own, and the whole machine's (client,
    // PostgreSQL, RabbitMQ and kernel included), to show what limits it.
    let per_upload = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map_or(f64::NAN, |(b, a)| (a - b) * 1000.0 / uploads as f64)
    };
    println!(
        "bench {name}-cpu: {:.2} ms/upload",
        per_upload(cpu_before.0, cpu_after.0)
    );
    println!(
        "bench {name}-machine-cpu: {:.2} ms/upload",
        per_upload(cpu_before.1, cpu_after.1)
    );
    sigterm(&mut sidecar).await?;
    let _ = std::fs::remove_dir_all(&storage);
    let _ = std::fs::remove_file(&config_path);
    if let Ok(conn) = bus::connect(&cli.amqp, "thumbnails-bench").await {
        if let Ok(ch) = conn.create_channel().await {
            let t = Topology::new(
                &format!("bench-{id}"),
                &format!("bench-{id}.object-created"),
            );
            testkit::helpers::undeclare(&ch, &t).await;
            let _ = ch.close(200, "done".into()).await;
        }
        let _ = conn.close(200, "done".into()).await;
    }
    drop(db);
    Ok(())
}

async fn bench_resurvey(cli: &Cli, rows: usize) -> anyhow::Result<()> {
    use thumbnails::ops::resurvey::{resurvey, ResurveyOptions};
    use thumbnails::surveys::{Templates, ThumbnailType};
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    // Rows as SkyPortal wrote them before DR10: layer=ls-dr9, pixscale 0.262.
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
               SELECT 'rs' || g, (g * 0.000359) % 360, ((g * 0.00017) % 180) - 90, false, md5(g::text), now(), now()
               FROM generate_series(1, {rows}) g;
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
               SELECT now(), now(), 'ls', 'https://www.legacysurvey.org/viewer/jpeg-cutout?ra=' || o.ra || '&dec=' || o.dec || '&size=200&layer=ls-dr9&pixscale=0.262&bands=grz', o.id
               FROM objs o;"
        ))
        .await?;
    for table in ["objs", "thumbnails"] {
        db.db
            .execute_unprepared(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    let config = thumbnails::config::Config::default();
    let templates = Templates::new(&config.surveys.sdss.template, &config.surveys.ls.template)?;
    let opts = ResurveyOptions {
        types: vec![ThumbnailType::Ls],
        batch_size: 10_000,
        dry_run: false,
        samples: 0,
        progress: false,
        stop: CancellationToken::new(),
    };
    let started = Instant::now();
    let summary = resurvey(&db.db, &templates, None, &opts).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rewritten = summary.rewritten();
    if rewritten != rows as u64 {
        bail!("resurvey rewrote {rewritten} of {rows} rows");
    }
    println!("bench resurvey: {:.0} rows/s", rows as f64 / elapsed);
    drop(db);
    Ok(())
}

/// A sweep over `objs` complete objects (sdss, ls, ps1 each), which must
/// find nothing to publish.
async fn bench_sweep(cli: &Cli, objs: usize) -> anyhow::Result<()> {
    use thumbnails::worker::reconcile::Sweeper;
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    let fill = Instant::now();
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
               SELECT 'ZTF' || lpad(g::text, 9, '0'), (g * 0.000359) % 360, ((g * 0.00017) % 180) - 90,
                      false, md5(g::text), now(), now()
               FROM generate_series(1, {objs}) g;
             INSERT INTO thumbnails (created_at, modified, type, public_url, obj_id)
               SELECT now(), now(), t.type::thumbnail_types, 'https://example/' || o.id, o.id
               FROM objs o, (VALUES ('sdss'), ('ls'), ('ps1')) t(type);"
        ))
        .await?;
    for table in ["objs", "thumbnails"] {
        db.db
            .execute_unprepared(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    eprintln!(
        "sweep: filled {objs} objects in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let mut config = thumbnails::config::Config::default();
    config.amqp.url = cli.amqp.clone();
    // A queue nobody declared: the backlog check counts it as empty.
    config.amqp.queue = format!("bench-{}.object-created", uuid::Uuid::new_v4().simple());
    let sweeper = Sweeper::new(&config, db.db.get_postgres_connection_pool().clone());
    let started = Instant::now();
    let summary = sweeper
        .sweep_once(&CancellationToken::new())
        .await?
        .context("the sweep lock is held elsewhere")?;
    let elapsed = started.elapsed().as_secs_f64();
    if summary.published != 0 {
        bail!(
            "the sweep published {} events for complete objects",
            summary.published
        );
    }
    println!("bench sweep-{}k: {elapsed:.2} s", objs / 1000);
    println!("bench sweep-rate: {:.0} objects/s", objs as f64 / elapsed);
    drop(db);
    Ok(())
}

/// One bulk INSERT of `rows` objs and `rows / 10` single-row INSERTs,
/// timed: without the feed's insert trigger, with it present but the feed
/// off, and with the feed on (median of 7 interleaved rounds each); the
/// trigger function's own time; then the relay draining the outbox.
async fn bench_feed_trigger(cli: &Cli, rows: usize) -> anyhow::Result<()> {
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    let insert = format!(
        "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
           SELECT 'ZTF' || lpad(g::text, 9, '0'), (g * 0.000359) % 360, ((g * 0.00017) % 180) - 90,
                  false, md5(g::text), now(), now()
           FROM generate_series(1, {rows}) g"
    );
    let variants: [(&str, &str); 3] = [
        (
            "none",
            "ALTER TABLE objs DISABLE TRIGGER thumbnails_feed_insert;
             UPDATE thumbnails_feed_state SET enabled = false",
        ),
        (
            "off",
            "ALTER TABLE objs ENABLE TRIGGER thumbnails_feed_insert;
             UPDATE thumbnails_feed_state SET enabled = false",
        ),
        (
            "on",
            "ALTER TABLE objs ENABLE TRIGGER thumbnails_feed_insert;
             UPDATE thumbnails_feed_state SET enabled = true",
        ),
    ];
    // Single-row INSERT statements, as SkyPortal's API makes them: the
    // statement-level trigger runs once per statement.
    let singles = (rows / 10).max(1);
    let single = format!(
        "DO $$ BEGIN FOR g IN 1..{singles} LOOP
           INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
           VALUES ('S' || lpad(g::text, 9, '0'), 1.5, 2.5, false, md5(g::text), now(), now());
         END LOOP; END $$"
    );
    // Rounds interleave the variants, so that load from outside the
    // benchmark (this machine is shared) spreads over all of them.
    const ROUNDS: usize = 7;
    let mut bulk: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut one: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _round in 0..ROUNDS {
        for (i, (_, setup)) in variants.iter().enumerate() {
            for (sql, out) in [(&single, &mut one), (&insert, &mut bulk)] {
                db.db
                    .execute_unprepared(&format!(
                        "TRUNCATE objs CASCADE; TRUNCATE thumbnails_feed_outbox; {setup}"
                    ))
                    .await?;
                db.db.execute_unprepared("CHECKPOINT").await?;
                let t = Instant::now();
                db.db.execute_unprepared(sql).await?;
                out[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bulk: Vec<f64> = bulk.iter_mut().map(median).collect();
    let one: Vec<f64> = one.iter_mut().map(median).collect();
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "bench feed-insert-{}k-bulk-trigger-{name}: {:.0} ms",
            rows / 1000,
            bulk[i]
        );
        println!(
            "bench feed-insert-single-trigger-{name}: {:.1} us/statement",
            one[i] * 1000.0 / singles as f64
        );
    }
    println!(
        "bench feed-insert-bulk-trigger-on-overhead: {:+.1} %",
        100.0 * (bulk[2] / bulk[0] - 1.0)
    );
    println!(
        "bench feed-insert-single-trigger-on-overhead: {:+.1} us/statement",
        (one[2] - one[0]) * 1000.0 / singles as f64
    );
    // The trigger's own time inside the bulk INSERT, as PostgreSQL counts it
    // (the transition table's capture is in the INSERT's own time).
    db.db
        .execute_unprepared(&format!(
            "TRUNCATE objs CASCADE; TRUNCATE thumbnails_feed_outbox; {}",
            variants[2].1
        ))
        .await?;
    let plan = db
        .db
        .query_all_raw(Statement::from_string(
            db.db.get_database_backend(),
            format!("EXPLAIN (ANALYZE, FORMAT JSON) {insert}"),
        ))
        .await?;
    let trigger_ms = plan
        .first()
        .and_then(|r| r.try_get_by_index::<serde_json::Value>(0).ok())
        .and_then(|v| {
            v[0]["Triggers"].as_array().map(|ts| {
                ts.iter()
                    .filter(|t| t["Trigger Name"] == "thumbnails_feed_insert")
                    .filter_map(|t| t["Time"].as_f64())
                    .sum::<f64>()
            })
        })
        .unwrap_or(f64::NAN);
    println!(
        "bench feed-insert-{}k-bulk-trigger-function: {trigger_ms:.1} ms",
        rows / 1000
    );
    // The EXPLAIN ANALYZE ran the insert with the feed on: the outbox holds
    // one row naming `rows` objects. Relay them.
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topology = Topology::new(
        &format!("bench-{id}"),
        &format!("bench-{id}.object-created"),
    );
    let link = bus::PublisherConnection::open(&cli.amqp, "thumbnails-bench", &topology).await?;
    let relay = thumbnails::feed::Relay::new(
        db.db.get_postgres_connection_pool().clone(),
        thumbnails::config::FeedConfig::default().batch,
    );
    let t = Instant::now();
    let drained = relay
        .drain(link.publisher(), &CancellationToken::new())
        .await?;
    let elapsed = t.elapsed().as_secs_f64();
    if drained.published != rows {
        bail!("the relay published {} of {rows} events", drained.published);
    }
    println!("bench feed-relay: {:.0} events/s", rows as f64 / elapsed);
    let conn = bus::connect(&cli.amqp, "thumbnails-bench").await?;
    let channel = conn.create_channel().await?;
    testkit::helpers::undeclare(&channel, &topology).await;
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    link.close("done").await;
    drop(db);
    Ok(())
}

async fn bench_migrate(cli: &Cli, rows: usize) -> anyhow::Result<()> {
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    // As SkyPortal leaves it: no unique index; per object an archival ls
    // row, a ZTF stamp, the same stamp again as `ztf` (older), a ref stamp.
    let objs = rows.div_ceil(4);
    db.db
        .execute_unprepared(&format!(
            "DROP INDEX thumbnails_obj_id_type_archival_key;
             DROP INDEX thumbnails_obj_id_type_survey_key;
             CREATE INDEX ix_thumbnails_obj_id ON thumbnails (obj_id);
             INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
               SELECT 'm' || g, 1, 2, false, md5(g::text), now(), now()
               FROM generate_series(0, {objs} - 1) g;
             INSERT INTO thumbnails (created_at, modified, type, public_url, survey, obj_id)
               SELECT now() - ((g / {objs}) || ' s')::interval, now(),
                      (ARRAY['ls', 'new', 'new', 'ref'])[1 + g / {objs} % 4]::thumbnail_types,
                      '/u/' || g, (ARRAY[NULL, 'ZTF', 'ztf', 'ZTF'])[1 + g / {objs} % 4],
                      'm' || (g % {objs})
               FROM generate_series(0, {rows} - 1) g;"
        ))
        .await?;
    for table in ["objs", "thumbnails"] {
        db.db
            .execute_unprepared(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    let started = Instant::now();
    thumbnails::store::migrate(&db.db).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let left = db
        .scalar_f64("SELECT count(*)::float8 FROM thumbnails")
        .await?;
    println!(
        "bench migrate: {elapsed:.1} s for {rows} rows ({} duplicates removed)",
        rows as f64 - left
    );
    drop(db);
    Ok(())
}

/// Draws every fixture cutout (6 ZTF fits.gz, 2 LSST fits) in turn, decode
/// included, for `seconds` on `threads` threads; prints stamps/s, stamps
/// per CPU second and the mean PNG size.
fn bench_cutouts(seconds: f64, threads: usize) -> anyhow::Result<()> {
    use thumbnails::cutouts::{self, CutoutSettings, Kind, Orientation};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut stamps = Vec::new();
    for (dir, orientation) in [
        ("ztf-alerts", Orientation::Ztf),
        ("lsst-synthetic", Orientation::Lsst),
        ("lsst-alerts", Orientation::Lsst),
    ] {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if !(name.ends_with(".fits") || name.ends_with(".fits.gz")) {
                continue;
            }
            let kind = Kind::ALL
                .into_iter()
                .find(|k| name.contains(k.field()))
                .unwrap_or(Kind::Science);
            stamps.push((std::fs::read(&path)?, kind, orientation));
        }
    }
    if stamps.is_empty() {
        bail!("no cutouts under {}", root.display());
    }
    let settings = CutoutSettings::default();
    let deadline = Duration::from_secs_f64(seconds);
    let cpu_before = process_cpu_secs(std::process::id()).unwrap_or(f64::NAN);
    let start = Instant::now();
    let totals = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<(u64, u64)> {
                    let (mut n, mut bytes) = (0u64, 0u64);
                    while start.elapsed() < deadline {
                        for (fits, kind, orientation) in &stamps {
                            let png = cutouts::draw_bytes(fits, *kind, *orientation, &settings)?;
                            bytes += png.len() as u64;
                            n += 1;
                        }
                    }
                    Ok((n, bytes))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = process_cpu_secs(std::process::id()).unwrap_or(f64::NAN) - cpu_before;
    let (n, bytes) = totals
        .iter()
        .fold((0, 0), |(n, b), (tn, tb)| (n + tn, b + tb));
    println!(
        "bench cutouts-{threads}-threads: {:.0} stamps/s",
        n as f64 / secs
    );
    println!(
        "bench cutouts-{threads}-threads-cpu: {:.0} stamps per CPU second",
        n as f64 / cpu
    );
    println!(
        "bench cutouts-png-size: {:.0} bytes",
        bytes as f64 / n as f64
    );
    Ok(())
}

/// JSON messages of one ZTF alert's three cutouts, an object each.
fn ztf_bodies(alerts: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cutout = |k: &str| -> anyhow::Result<String> { Ok(b64.encode(ztf_cutout(k)?)) };
    let (sci, tmpl, diff) = (
        cutout("cutoutScience")?,
        cutout("cutoutTemplate")?,
        cutout("cutoutDifference")?,
    );
    let bodies: Vec<Vec<u8>> = (0..alerts)
        .map(|i| {
            serde_json::to_vec(&serde_json::json!({
                "obj_id": format!("ZTF{i:09}"), "survey": "ZTF",
                "ra": (i as f64 * 0.0137) % 360.0, "dec": ((i as f64 * 0.0071) % 180.0) - 90.0,
                "cutoutScience": sci, "cutoutTemplate": tmpl, "cutoutDifference": diff,
            }))
            .unwrap_or_default()
        })
        .collect();
    Ok(bodies)
}

/// See [`What::CutoutsE2e`].
async fn bench_cutouts_e2e(
    cli: &Cli,
    alerts: usize,
    lsst: bool,
    storage_url: &str,
) -> anyhow::Result<()> {
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let exchange = format!("bench-{id}");
    let objects = Topology::new(&exchange, &format!("bench-{id}.object-created"));
    let topology = Topology::cutouts(&exchange, &format!("bench-{id}.alert-cutouts"));
    let conn = bus::connect(&cli.amqp, "thumbnails-bench").await?;
    let channel = conn.create_channel().await?;
    bus::declare(&channel, &objects).await?;
    bus::declare(&channel, &topology).await?;
    let publisher = Publisher::open(&conn, &exchange).await?;
    // Made and published 500 at a time: LSST packets are 120-260 KB each.
    let replicas = if lsst {
        Some(testkit::lsst::Replicas::load()?)
    } else {
        None
    };
    let ztf = ztf_bodies(if lsst { 0 } else { alerts })?;
    for start in (0..alerts).step_by(500) {
        let chunk = match &replicas {
            Some(r) => (start..alerts.min(start + 500))
                .map(|i| r.packet(i, 1_000_000_000 + i as i64))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => ztf[start..alerts.min(start + 500)].to_vec(),
        };
        publisher
            .publish_many(bus::ROUTING_ALERT_CUTOUTS, &chunk, true)
            .await?;
    }
    drop(ztf);
    let storage = tempfile::tempdir()?;
    let url = match storage_url {
        "file" => format!("file://{}", storage.path().display()),
        bucket => format!("{}/bench-{id}", bucket.trim_end_matches('/')),
    };
    let mut worker = thumbnails("worker", &db.url, &cli.amqp, &objects, &topology.queue)?
        .env("THUMBNAILS_STORAGE__URL", &url)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "")
        .env(
            "THUMBNAILS_HTTP__LISTEN",
            format!("127.0.0.1:{}", testkit::helpers::free_port()),
        )
        .spawn()?;
    let pid = worker.id().context("worker pid")?;
    let want = 3.0 * alerts as f64;
    let started = Instant::now();
    loop {
        let top = db
            .scalar_f64("SELECT COALESCE(max(id), 0)::float8 FROM thumbnails")
            .await?;
        if top >= want {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("worker did not finish in 15 minutes ({top} of {want} stamps)");
        }
        if let Some(status) = worker.try_wait()? {
            bail!("worker exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let cpu = process_cpu_secs(pid).unwrap_or(f64::NAN);
    let span = db
        .scalar_f64(
            "SELECT EXTRACT(EPOCH FROM max(modified) - min(created_at))::float8 FROM thumbnails",
        )
        .await?;
    sigterm(&mut worker).await?;
    let rate = alerts as f64 / span.max(1e-3);
    let name = match (lsst, storage_url) {
        (true, "file") => "cutouts-e2e-lsst".to_string(),
        (false, "file") => "cutouts-e2e".to_string(),
        (true, _) => "cutouts-e2e-lsst-s3".to_string(),
        (false, _) => "cutouts-e2e-s3".to_string(),
    };
    println!(
        "bench {name}: {rate:.0} alerts/s ({:.0} stamps/s, {alerts} alerts queued first)",
        3.0 * rate
    );
    println!("bench {name}-peak-rss: {rss:.1} MiB");
    println!("bench {name}-cpu: worker {cpu:.1} s");
    testkit::helpers::undeclare(&channel, &topology).await;
    testkit::helpers::undeclare(&channel, &objects).await;
    publisher.close().await;
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    drop(db);
    Ok(())
}

/// One gzipped cutout (`cutoutScience`, ...) of the ZTF fixture alert.
fn ztf_cutout(field: &str) -> anyhow::Result<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../tests/fixtures/ztf-alerts/ZTF18aaxjdyr_1661382530015060001_{field}.fits.gz"
    ));
    std::fs::read(&path).with_context(|| format!("{}", path.display()))
}

/// The three stamps of the ZTF fixture, drawn as the worker draws them.
fn ztf_stamps() -> anyhow::Result<Vec<(thumbnails::surveys::ThumbnailType, Vec<u8>)>> {
    use thumbnails::cutouts::{self, CutoutSettings, Kind, Orientation};
    use thumbnails::surveys::ThumbnailType;
    let settings = CutoutSettings::default();
    [
        ("cutoutScience", Kind::Science, ThumbnailType::New),
        ("cutoutTemplate", Kind::Template, ThumbnailType::Ref),
        ("cutoutDifference", Kind::Difference, ThumbnailType::Sub),
    ]
    .into_iter()
    .map(|(field, kind, ttype)| {
        let fits = ztf_cutout(field)?;
        Ok((
            ttype,
            cutouts::draw_bytes(&fits, kind, Orientation::Ztf, &settings)?,
        ))
    })
    .collect()
}

/// See [`What::Bucket`].
async fn bench_bucket(
    puts: usize,
    concurrency: usize,
    storage_url: &str,
    distinct: bool,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use thumbnails::config::{Location, StorageConfig};
    use thumbnails::files::{Bucket, RelPath};
    // A fresh prefix under the given one, as cutouts-e2e makes.
    let id = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("{}/bench-{id}", storage_url.trim_end_matches('/'));
    let Location::Bucket { bucket, prefix } =
        thumbnails::config::parse_location(&url).map_err(anyhow::Error::msg)?
    else {
        bail!("--storage must be s3://BUCKET/PREFIX");
    };
    let config = StorageConfig::default();
    let store = Bucket::open(&config, &bucket, &prefix)?;
    let stamps = ztf_stamps()?;
    let size = stamps.iter().map(|(_, png)| png.len()).sum::<usize>() / stamps.len();
    let cpu_before = process_cpu_secs(std::process::id()).unwrap_or(f64::NAN);
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..puts)
        .map(|i| {
            let (ttype, png) = &stamps[i % stamps.len()];
            let mut bytes = png.clone();
            if distinct {
                // Eight bytes appended: no longer a PNG, but a store only
                // keeps and hashes bytes.
                bytes.extend_from_slice(&(i as u64).to_le_bytes());
            }
            let key = store.key(&RelPath::stamp(
                &format!("ZTF{:09}", i / stamps.len()),
                *ttype,
                Some("ZTF"),
                config.depth,
            ));
            let store = &store;
            async move { store.put(&key, bytes.into()).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu_secs(std::process::id()).unwrap_or(f64::NAN) - cpu_before;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        bail!("a PUT failed: {e}");
    }
    let rate = puts as f64 / secs;
    let what = if distinct {
        "distinct"
    } else {
        "the stamps' own"
    };
    println!(
        "bench bucket-puts: {rate:.0} PUTs/s ({puts} PUTs of {size} B on average, {what} bytes, {concurrency} in flight, {cpu:.1} s of this process's CPU)"
    );
    println!(
        "bench bucket-ceiling: {:.0} alerts/s (three stamps each: the most an end-to-end run can store)",
        rate / stamps.len() as f64
    );
    Ok(())
}

/// See [`What::Ps1Burst`].
async fn bench_ps1_burst(cli: &Cli, n: usize, delay_ms: u64) -> anyhow::Result<()> {
    let db = TestDb::create_on(&cli.pg, "thumbnails_bench").await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topology = Topology::new(
        &format!("bench-{id}"),
        &format!("bench-{id}.object-created"),
    );
    let cutouts = Topology::cutouts(&topology.exchange, &format!("bench-{id}.alert-cutouts"));
    let stop = CancellationToken::new();
    let (ps1_url, stats) = testkit::ps1::serve_ps1_counted(
        testkit::ps1::Ps1Mode::Image {
            delay: Duration::from_millis(delay_ms),
        },
        stop.clone(),
    )
    .await?;
    let storage = tempfile::tempdir()?;
    let port = testkit::helpers::free_port();
    let mut service = thumbnails("run", &db.url, &cli.amqp, &topology, &cutouts.queue)?
        .env("THUMBNAILS_STORAGE__ROOT", storage.path())
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", &ps1_url)
        .env("THUMBNAILS_GRAYSCALE__ENABLED", "false")
        .env("THUMBNAILS_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .spawn()?;
    testkit::helpers::wait_healthy(port).await;
    let admin = Database::connect(&db.url).await?;
    let started = Instant::now();
    admin
        .execute_unprepared(&format!(
            "INSERT INTO objs (id, ra, dec, is_roid, internal_key, created_at, modified)
             SELECT 'PS1B' || lpad(i::text, 7, '0'), (i * 0.0137)::numeric % 360, 10.0, false,
                    'k' || i, now(), now()
             FROM generate_series(1, {n}) i"
        ))
        .await?;
    loop {
        let done = db.scalar_f64("SELECT count(*)::float8 FROM thumbnails WHERE type = 'ps1' AND public_url LIKE 'https://%'")
            .await?;
        if done >= n as f64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("not done in 15 minutes ({done} of {n})");
        }
        if let Some(status) = service.try_wait()? {
            bail!("the service exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let most = stats
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    sigterm(&mut service).await?;
    stop.cancel();
    println!("bench ps1-burst: {secs:.1} s until {n} objects inserted at once had a real PS1 URL (stand-in at {delay_ms} ms; at most {most} lookups in flight)");
    let conn = bus::connect(&cli.amqp, "thumbnails-bench").await?;
    let channel = conn.create_channel().await?;
    testkit::helpers::undeclare(&channel, &topology).await;
    testkit::helpers::undeclare(&channel, &cutouts).await;
    let _ = conn.close(200, "done".into()).await;
    let _ = admin.close().await;
    drop(db);
    Ok(())
}
