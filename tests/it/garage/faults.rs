//! A store that refuses (bad key, missing bucket) stops the service at
//! start in one line; a store that does not answer makes uploads 503 and
//! deliveries wait (retried with back-off, neither acked nor
//! dead-lettered) until it answers again; a commit that fails puts the
//! previous objects back.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use thumbnails::store::cutouts::write_stamps;

use super::{object, objects, objects_settled, store_of, Garage, BUCKET, S3};
use crate::cutouts::{cutouts_json, publish_alert};
use crate::helpers::*;
use crate::kept_fits::{fits_of, gunzip};
use crate::sidecar::app::{message, png, TestApp};

/// `thumbnails run` with the test's names and the given storage variables:
/// its exit status and stderr.
async fn run_with(vars: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    let port = free_port();
    let mut cmd = crate::cli::service("run", &db.url, &bus, port);
    cmd.stdin(Stdio::null()).env("RUST_LOG", "off");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("stops in time")
        .expect("run");
    bus.delete().await;
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn a_store_that_refuses_stops_the_service_at_start_in_one_line() {
    let garage = Garage::get();
    let base = |url: String, secret: &str| {
        vec![
            ("THUMBNAILS_STORAGE__URL", url),
            ("THUMBNAILS_STORAGE__S3__ENDPOINT", S3.to_string()),
            ("THUMBNAILS_STORAGE__S3__REGION", "garage".to_string()),
            (
                "THUMBNAILS_STORAGE__S3__ACCESS_KEY_ID",
                garage.key_id.clone(),
            ),
            (
                "THUMBNAILS_STORAGE__S3__SECRET_ACCESS_KEY",
                secret.to_string(),
            ),
            ("THUMBNAILS_STORAGE__S3__RETRY_S", "1".to_string()),
        ]
    };
    let cases = [
        (
            "a bad key",
            base(format!("s3://{BUCKET}/refused"), "not-the-secret"),
            BUCKET,
        ),
        (
            "a missing bucket",
            base("s3://no-such-bucket-here/x".into(), &garage.secret),
            "no-such-bucket-here",
        ),
    ];
    for (what, vars, bucket) in cases {
        let (status, err) = run_with(&vars).await;
        assert!(!status.success(), "{what}: must stop");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains(&format!("bucket {bucket} at {S3}")),
            "{what}: names the bucket and endpoint: {err}"
        );
        assert!(!err.contains(&garage.secret), "{what}: no secret shown");
    }
}

/// A TCP front for the store that holds every connection unanswered until
/// `answer` is set, then passes them through; counts the connections.
struct Stall {
    addr: SocketAddr,
    answer: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Stall {
    async fn start(target: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (a, n) = (answer.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                let answer = a.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if answer {
                        let to = target.trim_start_matches("http://");
                        if let Ok(mut store) = tokio::net::TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut store).await;
                        }
                    } else {
                        // Read and never answer, until the client gives up.
                        let mut sink = tokio::io::sink();
                        let _ = tokio::io::copy(&mut client, &mut sink).await;
                    }
                });
            }
        });
        Self {
            addr,
            answer,
            connections,
        }
    }
}

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn a_store_that_does_not_answer_holds_deliveries_and_uploads_get_503() {
    let garage = Garage::get();
    let stall = Stall::start(S3).await;
    let app = TestApp::spawn_with(|c| {
        garage.configure(c);
        c.storage.s3.endpoint = Some(format!("http://{}", stall.addr));
        c.storage.s3.timeout_s = 0.5;
        c.storage.s3.retry_s = 1.0;
    })
    .await;
    let store = store_of(&app.config);
    app.add_obj("ZTF1").await;
    let (status, body) = app.upload_png("ZTF1", "new", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        message(&body).contains("file storage does not answer"),
        "{body}"
    );
    assert_eq!(app.count("thumbnails").await, 0);

    // An alert waits: its write is retried while the store is silent.
    let worker = RunningWorker::start(&app.config).await;
    let before = stall.connections.load(Ordering::SeqCst);
    publish_alert(
        &app.bus,
        cutouts_json("ZTF-held").to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    eventually(
        "retries of the held write",
        Duration::from_secs(60),
        || async { (stall.connections.load(Ordering::SeqCst) >= before + 4).then_some(()) },
    )
    .await;
    assert_eq!(app.count("thumbnails").await, 0, "nothing committed");
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.dead_queue()).await, 0);

    // The store answers again: the held alert is stored, nothing lost.
    stall.answer.store(true, Ordering::SeqCst);
    eventually(
        "the held alert's stamps",
        Duration::from_secs(60),
        || async { (app.count("thumbnails").await == 3).then_some(()) },
    )
    .await;
    let (status, body) = app.upload_png("ZTF1", "new", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    worker.stop().await;
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.dead_queue()).await, 0);
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.queue).await, 0);
    let uris: Vec<String> = app.db.file_uris().await;
    assert_eq!(uris.len(), 4);
    for uri in &uris {
        assert!(object(&store, uri).await.is_some(), "{uri}");
    }
    assert_eq!(objects(&store).await.len(), 4, "no object without a row");
    app.stop().await;
}

/// A commit that fails after the objects are written puts the previous
/// bytes back (and removes the new ones), kept FITS included.
#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn a_failed_commit_puts_the_previous_objects_back() {
    let garage = Garage::get();
    let db = TestDb::new().await;
    let mut config = Config::default();
    garage.configure(&mut config);
    let store = store_of(&config);
    let job = crate::kept_fits::lsst_job;
    let written = write_stamps(&db.db, &store, &[job("X", b"png X1", Some(b"SIMPLE X1"))])
        .await
        .expect("first write");
    let uri_x = written[0].stored[0].file_uri.clone().expect("file");
    assert!(uri_x.starts_with("s3://"), "{uri_x}");
    let before = objects(&store).await;
    assert_eq!(before.len(), 2);
    db.refuse_commits().await;
    for jobs in [
        vec![
            job("X", b"png X2", Some(b"SIMPLE X2")),
            job("Y", b"png Y2", Some(b"SIMPLE Y2")),
        ],
        vec![job("X", b"png X3", None)],
    ] {
        write_stamps(&db.db, &store, &jobs)
            .await
            .expect_err("the commit is refused");
        assert_eq!(
            objects_settled(&store, |got| got == before).await,
            before,
            "nothing added or left"
        );
        assert_eq!(
            object(&store, &uri_x).await.as_deref(),
            Some(&b"png X1"[..])
        );
        let fits = object(&store, &fits_of(&uri_x)).await.expect("X's FITS");
        assert_eq!(gunzip(&fits), b"SIMPLE X1");
    }
}

use thumbnails::config::Config;
