//! A full disk, then a read-only one (issue: faults, case 2), with
//! `storage.root` on a small tmpfs made here (needs root, as the TLS
//! tests): uploads are refused (507 full, 503 read-only) leaving no row and
//! no file; alert deliveries wait, never dead-lettered, `/readyz` names the
//! storage, `thumbnails_storage_errors_total{kind}` counts; once space is
//! freed every alert is stored, once each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::cutouts::{cutouts_json, publish_alert};
use crate::helpers::*;
use crate::sidecar::app::{files_under, message, png, TestApp};

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of `size` mounted on a temporary folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], self.path());
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .expect("mount (the test needs root)");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Fills the filesystem with one file; returns it.
fn fill(root: &Path) -> PathBuf {
    use std::io::Write;
    let path = root.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![7u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    path
}

async fn readyz(app: &TestApp) -> (StatusCode, String) {
    let (status, body) = app.json(Method::GET, "/readyz", None, None).await;
    (status, message(&body))
}

#[tokio::test]
async fn a_full_then_read_only_disk_loses_nothing_and_says_so() {
    let fs = Tmpfs::mount("4m");
    let root = fs.path().to_path_buf();
    let app = TestApp::spawn_with(|c| c.storage.root = root.clone()).await;
    let worker = RunningWorker::start(&app.config).await;
    app.add_obj("UP1").await;
    let filler = fill(&root);

    // An upload: 507, nothing kept.
    let (status, body) = app.upload_png("UP1", "new", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(message(&body).contains("full"), "{body}");
    assert_eq!(app.count("thumbnails").await, 0);
    assert_eq!(files_under(&root), vec![filler.clone()], "no file left");

    // Alerts wait: not dead-lettered, /readyz and the metric say why.
    for i in 0..10 {
        publish_alert(
            &app.bus,
            cutouts_json(&format!("FULL{i}")).to_string().as_bytes(),
            Some("application/json"),
        )
        .await;
    }
    let cause = eventually("/readyz names the full storage", WAIT, || async {
        let (status, cause) = readyz(&app).await;
        (status == StatusCode::SERVICE_UNAVAILABLE && cause.contains("is full")).then_some(cause)
    })
    .await;
    assert!(cause.contains(&*root.to_string_lossy()), "{cause}");
    let (_, _, metrics) = app.send(Method::GET, "/metrics", None, None).await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.contains("thumbnails_storage_errors_total{kind=\"full\"}"),
        "{metrics}"
    );
    assert_eq!(app.count("thumbnails").await, 0);
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.dead_queue()).await, 0);
    assert_eq!(
        files_under(&root),
        vec![filler.clone()],
        "no partial or temporary file"
    );

    // Space freed: every alert stored, once; ready again.
    std::fs::remove_file(&filler).expect("free the space");
    eventually("the held alerts' stamps", WAIT, || async {
        (app.count("thumbnails").await == 30).then_some(())
    })
    .await;
    eventually("ready again", WAIT, || async {
        (readyz(&app).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (status, body) = app.upload_png("UP1", "new", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.count("thumbnails").await, 31);
    assert_eq!(files_under(&root).len(), 31);
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.dead_queue()).await, 0);

    // Read-only: 503, nothing changed; writable again, it works.
    fs.remount("ro");
    let (status, body) = app.upload_png("UP1", "ref", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(message(&body).contains("read-only"), "{body}");
    assert_eq!(app.count("thumbnails").await, 31);
    let (status, cause) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(cause.contains("read-only"), "{cause}");
    fs.remount("rw");
    let (status, body) = app.upload_png("UP1", "ref", &png(40, 40, true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(files_under(&root).len(), 32);
    worker.stop().await;
    app.stop().await;
}
