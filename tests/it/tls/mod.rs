//! TLS to PostgreSQL and RabbitMQ, and secrets from files, against the
//! servers of `scripts/tls` (a PostgreSQL cluster that accepts only TLS, a
//! RabbitMQ node with a TLS listener that requires client certificates).
//! The first test to need them runs `scripts/tls up` (idempotent: it
//! starts only what is not running; about 30 s the first time). Each test
//! uses a database and exchange/queue names of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use base64::Engine;
use sea_orm::ConnectionTrait;
use thumbnails::bus::{Brokers, Topology};
use thumbnails::config::{AmqpConfig, AmqpTlsConfig};
use tokio::process::Command;

use crate::helpers::undeclare;

mod failures;
mod run;
mod secrets;

const PG: &str = "localhost:55432";
const AMQPS: &str = "localhost:5771";

/// Where `scripts/tls` keeps its certificates (its default TLS_DIR).
fn servers() -> &'static Path {
    static UP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let up = UP.get_or_init(|| {
        let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tls"))
            .arg("up")
            .env("TLS_DIR", "/tmp/thumbnails-tls")
            .output()
            .map_err(|e| format!("scripts/tls up: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/tls up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PathBuf::from("/tmp/thumbnails-tls"))
    });
    match up {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn file(name: &str) -> String {
    servers().join(name).display().to_string()
}

/// verify-full against the throwaway CA, as `user`, with the client
/// certificate when `client_cert`.
fn pg_url(user: &str, host: &str, db: &str, client_cert: bool) -> String {
    let mut url = format!(
        "postgres://{user}@{host}/{db}?sslmode=verify-full&sslrootcert={}",
        file("ca.crt")
    );
    if client_cert {
        url.push_str(&format!(
            "&sslcert={}&sslkey={}",
            file("client.crt"),
            file("client.key")
        ));
    }
    url
}

/// The broker settings with the client certificate, EXTERNAL login.
fn amqp_config(names: &Names) -> AmqpConfig {
    AmqpConfig {
        url: format!("amqps://{AMQPS}/%2f"),
        exchange: names.topology.exchange.clone(),
        queue: names.topology.queue.clone(),
        cutouts_queue: names.cutouts.queue.clone(),
        tls: AmqpTlsConfig {
            ca_file: Some(file("ca.crt").into()),
            cert_file: Some(file("client.crt").into()),
            key_file: Some(file("client.key").into()),
            external: true,
        },
        ..AmqpConfig::default()
    }
}

/// A test's own database and exchange/queue names.
struct Names {
    db: String,
    topology: Topology,
    cutouts: Topology,
}

impl Names {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            db: format!("thumbnails_it_tls_{id}"),
            topology: Topology::new(
                &format!("it-tls-{id}"),
                &format!("it-tls-{id}.object-created"),
            ),
            cutouts: Topology::cutouts(
                &format!("it-tls-{id}"),
                &format!("it-tls-{id}.alert-cutouts"),
            ),
        }
    }

    /// Drops the database and deletes the queues and exchange.
    async fn clean_up(&self) {
        if let Ok(admin) =
            thumbnails::store::connect(&pg_url("thumbnails", PG, "postgres", true), 1).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
                .await;
            let _ = admin.close().await;
        }
        let amqp = amqp_config(self);
        if let Ok(conn) = Brokers::from_config(&amqp).connect("it-tls cleanup").await {
            if let Ok(channel) = conn.create_channel().await {
                undeclare(&channel, &self.topology).await;
                undeclare(&channel, &self.cutouts).await;
            }
            let _ = conn.close(200, "cleaned".into()).await;
        }
    }
}

/// The binary with the repository's config.yaml, PS1 lookups and the
/// grayscale pass off (no outbound calls), logs off unless asked.
fn thumbnails(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thumbnails"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("THUMBNAILS_SURVEYS__PS1__LOOKUP_URL", "")
        .env("THUMBNAILS_GRAYSCALE__ENABLED", "false")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Sets `amqp` as environment variables.
fn with_amqp(c: &mut Command, amqp: &AmqpConfig) {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    c.env("THUMBNAILS_AMQP__URL", &amqp.url)
        .env("THUMBNAILS_AMQP__EXCHANGE", &amqp.exchange)
        .env("THUMBNAILS_AMQP__QUEUE", &amqp.queue)
        .env("THUMBNAILS_AMQP__CUTOUTS_QUEUE", &amqp.cutouts_queue)
        .env("THUMBNAILS_AMQP__TLS__CA_FILE", path(&amqp.tls.ca_file))
        .env("THUMBNAILS_AMQP__TLS__CERT_FILE", path(&amqp.tls.cert_file))
        .env("THUMBNAILS_AMQP__TLS__KEY_FILE", path(&amqp.tls.key_file))
        .env(
            "THUMBNAILS_AMQP__TLS__EXTERNAL",
            amqp.tls.external.to_string(),
        );
}

/// Runs to the end; (success, stderr).
async fn outcome(mut c: Command) -> (bool, String) {
    let out = c.output().await.expect("run thumbnails");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ztf-alerts")
        .join(name);
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("fixture"))
}

/// Runs `c` to the end: it must fail with one `error:` line that says `says`.
pub(super) async fn check_failure(what: &str, c: Command, says: &[&str]) {
    let (ok, err) = outcome(c).await;
    assert!(!ok, "{what}: must exit non-zero; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    for s in says {
        assert!(err.contains(s), "{what}: {s:?} missing in: {err}");
    }
}
