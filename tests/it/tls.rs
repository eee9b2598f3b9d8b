//! TLS to PostgreSQL and RabbitMQ, and secrets from files, against the
//! servers of `scripts/tls` (a PostgreSQL cluster that accepts only TLS, a
//! RabbitMQ node with a TLS listener that requires client certificates).
//! The first test to need them runs `scripts/tls up` (idempotent: it
//! starts only what is not running; about 30 s the first time). Each test
//! uses a database and exchange/queue names of its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use sea_orm::ConnectionTrait;
use thumbnails::bus::{self, Brokers, PublisherConnection, Topology, ROUTING_OBJ_CREATED};
use thumbnails::config::{AmqpConfig, AmqpTlsConfig};
use tokio::process::Command;

use crate::helpers::{event, eventually, free_port, sigterm, undeclare, wait_healthy};

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

#[tokio::test]
async fn run_with_verify_full_and_client_certificates_consumes_draws_and_uploads() {
    let names = Names::new();
    let amqp = amqp_config(&names);
    let port = free_port();
    let storage = tempfile::tempdir().expect("tempdir");
    // The API token comes from a secrets file, too.
    let token = "tls-test-token-1";
    let tokens = storage.path().join("tokens.json");
    std::fs::write(
        &tokens,
        format!(r#"[{{"token": "{token}", "scopes": ["upload", "manage"]}}]"#),
    )
    .expect("tokens file");
    let mut run = thumbnails(&["run"]);
    run.env(
        "THUMBNAILS_DATABASE__URL",
        pg_url("thumbnails", PG, &names.db, true),
    )
    .env("THUMBNAILS_HTTP__LISTEN", format!("127.0.0.1:{port}"))
    .env("THUMBNAILS_HTTP__TOKENS_FILE", &tokens)
    .env("THUMBNAILS_STORAGE__ROOT", storage.path());
    with_amqp(&mut run, &amqp);
    let mut child = run.spawn().expect("spawn");
    wait_healthy(port).await;

    // obj.created through the TLS broker -> rows in the TLS database.
    let publisher = PublisherConnection::open_config(&amqp, "it-tls publisher", &names.topology)
        .await
        .expect("publisher over TLS");
    publisher
        .publisher()
        .publish_json(ROUTING_OBJ_CREATED, &event("ZTF-tls-1", 120.5, 33.25), true)
        .await
        .expect("publish");
    let db = thumbnails::store::connect(&pg_url("thumbnails", PG, &names.db, true), 2)
        .await
        .expect("database over TLS");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    sql,
                ))
                .await
                .ok()??;
            row.try_get_by_index::<i64>(0).ok()
        }
    };
    eventually(
        "survey rows written over TLS",
        Duration::from_secs(60),
        || async {
            (count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1'").await? == 3)
                .then_some(())
        },
    )
    .await;

    // An alert's cutouts, drawn; then an upload.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let alert = "ZTF18aagtxuc_396522680015040001";
    let cutouts = serde_json::json!({
        "survey": "ZTF",
        "cutoutScience": fixture(&format!("{alert}_cutoutScience.fits.gz")),
        "cutoutTemplate": fixture(&format!("{alert}_cutoutTemplate.fits.gz")),
        "cutoutDifference": fixture(&format!("{alert}_cutoutDifference.fits.gz")),
    });
    let reply = http
        .post(format!("{base}/api/objs/ZTF-tls-1/cutouts"))
        .header("Authorization", format!("token {token}"))
        .header("Content-Type", "application/json")
        .body(cutouts.to_string())
        .send()
        .await
        .expect("POST cutouts");
    assert!(reply.status().is_success(), "{:?}", reply.text().await);
    let upload = serde_json::json!({
        "obj_id": "ZTF-tls-1",
        "ttype": "new",
        "data": fixture(&format!("{alert}_cutoutScience.reference.png")),
    });
    let reply = http
        .post(format!("{base}/api/thumbnail"))
        .header("Authorization", format!("token {token}"))
        .header("Content-Type", "application/json")
        .body(upload.to_string())
        .send()
        .await
        .expect("POST thumbnail");
    assert!(reply.status().is_success(), "{:?}", reply.text().await);
    assert_eq!(
        count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1' AND survey = 'ZTF'")
            .await,
        Some(3),
        "new, ref and sub drawn from the alert"
    );
    assert_eq!(
        count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1' AND origin = 'upload' AND survey IS NULL").await,
        Some(1),
        "the upload"
    );

    let status = sigterm(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    publisher.close("done").await;
    let _ = db.close().await;
    names.clean_up().await;
}

/// Each failure: (what, database URL, broker settings or None for the
/// defaults' database-only `migrate`, what stderr must say).
#[tokio::test]
async fn each_tls_failure_is_one_line_naming_the_host_and_the_cause() {
    let names = Names::new();
    let good = amqp_config(&names);
    let pg_cases = [
        (
            "database: certificate not signed by the configured CA",
            pg_url("thumbnails", PG, &names.db, true).replace("/ca.crt", "/other-ca.crt"),
            vec![PG, "not signed by a trusted CA", "other-ca.crt"],
        ),
        (
            "database: host name mismatch under verify-full",
            pg_url("thumbnails", "127.0.0.1:55432", &names.db, true),
            vec!["127.0.0.1:55432", "does not name the host 127.0.0.1"],
        ),
        (
            "database: the server requires TLS, the URL disables it",
            format!("postgres://thumbnails@{PG}/{}?sslmode=disable", names.db),
            vec![PG, "accepts only TLS", "sslmode=verify-full"],
        ),
        (
            "database: the server requires a client certificate",
            pg_url("thumbnails", PG, &names.db, false),
            vec![PG, "requires a client certificate", "sslcert"],
        ),
    ];
    for (what, url, says) in pg_cases {
        let mut c = thumbnails(&["migrate"]);
        c.env("THUMBNAILS_DATABASE__URL", url);
        check_failure(what, c, &says).await;
    }

    let amqp_cases = [
        (
            "broker: certificate not signed by the configured CA",
            AmqpConfig {
                tls: AmqpTlsConfig {
                    ca_file: Some(file("other-ca.crt").into()),
                    ..good.tls.clone()
                },
                ..good.clone()
            },
            vec![AMQPS, "not signed by a trusted CA", "amqp.tls.ca_file"],
        ),
        (
            "broker: host name mismatch",
            AmqpConfig {
                url: "amqps://127.0.0.1:5771/%2f".into(),
                ..good.clone()
            },
            vec!["127.0.0.1:5771", "does not name the host 127.0.0.1"],
        ),
        (
            "broker: a TLS port, a plain amqp:// URL",
            AmqpConfig {
                url: format!("amqp://{AMQPS}/%2f"),
                tls: AmqpTlsConfig::default(),
                ..good.clone()
            },
            vec![AMQPS, "use amqps://"],
        ),
        (
            "broker: a client certificate required, none configured",
            AmqpConfig {
                tls: AmqpTlsConfig {
                    ca_file: good.tls.ca_file.clone(),
                    ..AmqpTlsConfig::default()
                },
                ..good.clone()
            },
            vec![AMQPS, "requires a client certificate", "amqp.tls.cert_file"],
        ),
    ];
    for (what, amqp, says) in amqp_cases {
        // Only the broker: dead-letters migrate opens no database.
        let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
        with_amqp(&mut c, &amqp);
        check_failure(what, c, &says).await;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = thumbnails(&["migrate"]);
    // A directory: unreadable as a file, even for root.
    c.env("THUMBNAILS_DATABASE__PASSWORD_FILE", dir.path());
    let shown = dir.path().display().to_string();
    check_failure(
        "an unreadable secret file",
        c,
        &["database.password_file", &shown],
    )
    .await;
    names.clean_up().await;
}

async fn check_failure(what: &str, c: Command, says: &[&str]) {
    let (ok, err) = outcome(c).await;
    assert!(!ok, "{what}: must exit non-zero; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    for s in says {
        assert!(err.contains(s), "{what}: {s:?} missing in: {err}");
    }
}

#[tokio::test]
async fn passwords_from_files_log_in_where_the_urls_have_none() {
    let names = Names::new();
    let pg_password = std::fs::read_to_string(servers().join("secrets/pg_password"))
        .expect("the cluster's password");
    let url = pg_url("thumbnails_pw", PG, &names.db, false);
    assert!(!url.contains("thumbnails_pw:"), "no password in {url}");

    // Without the file: refused.
    let mut c = thumbnails(&["migrate"]);
    c.env("THUMBNAILS_DATABASE__URL", &url);
    check_failure("no password", c, &[PG, "password authentication failed"]).await;

    // With it (and a wrong one in the URL, which the file overrides): in,
    // and the log says where the password came from, never what it is.
    let mut c = thumbnails(&["migrate"]);
    c.env(
        "THUMBNAILS_DATABASE__URL",
        url.replace("thumbnails_pw@", "thumbnails_pw:wrong-in-url@"),
    )
    .env(
        "THUMBNAILS_DATABASE__PASSWORD_FILE",
        file("secrets/pg_password"),
    )
    .env("RUST_LOG", "info");
    let out = c.output().await.expect("migrate");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("database.password_file"), "{logs}");
    assert!(
        !logs.contains(pg_password.trim()),
        "the password is never logged"
    );
    assert!(!logs.contains("wrong-in-url"), "nor the URL's");

    // The broker: user and password file, the client certificate (the
    // node requires one) without EXTERNAL; the first node of the list is
    // down, so the second (TLS too) is used.
    let amqp = AmqpConfig {
        url: format!("amqps://localhost:1/%2f,amqps://thumbnails_pw@{AMQPS}/%2f"),
        tls: AmqpTlsConfig {
            external: false,
            ..amqp_config(&names).tls
        },
        ..amqp_config(&names)
    };
    let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
    with_amqp(&mut c, &amqp);
    let (ok, err) = outcome(c).await;
    assert!(!ok, "guest's password is not thumbnails_pw's: {err}");
    assert!(err.contains("ACCESS_REFUSED"), "{err}");
    let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
    with_amqp(&mut c, &amqp);
    c.env(
        "THUMBNAILS_AMQP__PASSWORD_FILE",
        file("secrets/amqp_password"),
    );
    let (ok, err) = outcome(c).await;
    assert!(ok, "{err}");

    // And the service's own connections take the same settings.
    let mut amqp = amqp;
    amqp.password_file = Some(file("secrets/amqp_password").into());
    amqp.password = Some(thumbnails::config::Secret::new(
        std::fs::read_to_string(servers().join("secrets/amqp_password"))
            .expect("password")
            .trim(),
    ));
    let conn = bus::connect_config(&amqp, "it-tls password")
        .await
        .expect("logs in with the file's password");
    let _ = conn.close(200, "done".into()).await;
    names.clean_up().await;
}
