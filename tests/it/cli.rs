//! The binary as a user runs it: `thumbnails run` from the README, and
//! one-line errors for bad config or unreachable dependencies.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::*;

fn thumbnails() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thumbnails"));
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// `thumbnails <subcommand>` against the test's database and bus names, PS1
/// lookups off, HTTP on `port`, quiet logs; tests add what they need.
pub fn service(subcommand: &str, database_url: &str, bus: &TestBus, port: u16) -> Command {
    let mut c = thumbnails();
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(subcommand)
        .env("THUMBNAILS_DATABASE__URL", database_url)
        .env("THUMBNAILS_AMQP__EXCHANGE", &bus.topology.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &bus.topology.queue)
        .env("THUMBNAILS_AMQP__CUTOUTS_QUEUE", &bus.cutouts.queue)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "")
        .env("THUMBNAILS_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn");
    c
}

#[tokio::test]
async fn run_as_the_readme_says_migrates_consumes_serves_and_stops_cleanly() {
    let bus = TestBus::new().await;
    // `run` creates a missing database itself: give it a name nobody has.
    let name = format!("thumbnails_it_run_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let port = free_port();
    let storage = tempfile::tempdir().expect("tempdir");
    let mut child = service("run", &url, &bus, port)
        .env("THUMBNAILS_STORAGE__ROOT", storage.path())
        .spawn()
        .expect("spawn");

    wait_healthy(port).await;
    bus.publish(&event("ZTF-run-1", 12.5, -3.25)).await;

    let db = TestDb::attach(&name, &url).await;
    eventually(
        "rows from the running service",
        Duration::from_secs(60),
        || async {
            (db.scalar_i64("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-run-1'")
                .await
                == 3)
                .then_some(())
        },
    )
    .await;
    let status = sigterm(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    bus.delete().await;
}

#[tokio::test]
async fn bad_config_is_a_one_line_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "amqp:\n  prefetch: many\n").expect("write");
    let out = thumbnails()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("amqp.prefetch"), "{err}");

    let out = thumbnails()
        .arg("--config")
        .arg(dir.path().join("missing.yaml"))
        .arg("worker")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}

#[tokio::test]
async fn unreachable_dependencies_are_named_at_start() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    let out = thumbnails()
        .args(["--config", config, "worker"])
        .env(
            "THUMBNAILS_DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let db = TestDb::new().await;
    let out = thumbnails()
        .args(["--config", config, "worker"])
        .env("THUMBNAILS_DATABASE__URL", &db.url)
        .env("THUMBNAILS_AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(
        !err.contains("guest:guest"),
        "passwords are not shown: {err}"
    );
}

/// Bad configuration at start, one line each naming the key or the
/// address: a bad entry in an `amqp.url` list, `cutouts.size` 0, the two
/// queues of one name, `http.listen` taken.
#[tokio::test]
async fn each_bad_setting_is_one_line_at_start() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let cases: [(&str, &str, String, &str); 4] = [
        (
            "worker",
            "THUMBNAILS_AMQP__URL",
            format!("{AMQP},not-a-url"),
            "amqp.url: not-a-url",
        ),
        (
            "worker",
            "THUMBNAILS_CUTOUTS__SIZE",
            "0".into(),
            "cutouts.size",
        ),
        (
            "worker",
            "THUMBNAILS_AMQP__CUTOUTS_QUEUE",
            bus.topology.queue.clone(),
            "amqp.cutouts_queue",
        ),
        (
            "sidecar",
            "THUMBNAILS_HTTP__LISTEN",
            format!("127.0.0.1:{taken_port}"),
            "http.listen",
        ),
    ];
    for (subcommand, key, value, named) in cases {
        let out = service(subcommand, &db.url, &bus, free_port())
            .env(key, &value)
            .env("RUST_LOG", "off")
            .output()
            .await
            .expect("run");
        assert!(!out.status.success(), "{key}={value} must stop");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{key}: {err}");
        assert!(err.contains(named), "{key}: names {named}: {err}");
    }
    drop(taken);
    bus.delete().await;
}

#[tokio::test]
async fn an_unwritable_storage_root_stops_the_service_at_start_in_one_line() {
    let blocker = tempfile::NamedTempFile::new().expect("file");
    let root = blocker.path().join("store");
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    for subcommand in ["worker", "sidecar"] {
        let out = service(subcommand, &db.url, &bus, free_port())
            .env("THUMBNAILS_STORAGE__ROOT", &root)
            .env("RUST_LOG", "off")
            .output()
            .await
            .expect("run");
        assert!(!out.status.success(), "{subcommand} must stop");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{subcommand}: {err}");
        assert!(err.contains("storage: the folder"), "{subcommand}: {err}");
        assert!(
            err.contains(&*root.to_string_lossy()),
            "{subcommand}: {err}"
        );
    }
    bus.delete().await;
}

#[tokio::test]
async fn worker_alone_exports_its_counters_on_http_listen() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let port = free_port();
    let mut child = service("worker", &db.url, &bus, port)
        .spawn()
        .expect("spawn");
    bus.publish(&event("ZTF-metrics-1", 12.5, -3.25)).await;
    let http = reqwest::Client::new();
    let text = eventually(
        "the worker's counters on /metrics",
        Duration::from_secs(60),
        || async {
            let r = http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok()?;
            let text = r.text().await.ok()?;
            text.contains("thumbnails_worker_events_total{outcome=\"done\"} 1")
                .then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("thumbnails_worker_rows_written_total 3"),
        "{text}"
    );
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    assert!(sigterm(&mut child).await.success());
    bus.delete().await;
}
