//! `thumbnails files audit|repair` on the bucket: listing instead of
//! walking, copy and delete instead of rename, `--delete-orphans` with the
//! grace rule.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use thumbnails::files::RelPath;
use thumbnails::ops::files::{files, FilesOptions};
use thumbnails::surveys::ThumbnailType;
use tokio_util::sync::CancellationToken;

use super::paths::row;
use super::{object, objects, objects_settled, store_of, Garage};
use crate::sidecar::app::{png, TestApp};

fn opts(repair: bool, delete_orphans: bool, grace: Duration) -> FilesOptions {
    FilesOptions {
        repair,
        dry_run: false,
        delete_orphans,
        grace,
        batch_size: 2,
        progress: false,
        stop: CancellationToken::new(),
    }
}

/// `aa/bb/name` of a layout place.
fn layout(rel: &RelPath) -> String {
    rel.as_url_path()
        .strip_prefix("thumbnails/")
        .expect("under thumbnails/")
        .to_string()
}

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn audit_counts_and_repair_moves_depth_and_removes_orphans() {
    let garage = Garage::get();
    let app = TestApp::spawn_with(|c| {
        garage.configure(c);
    })
    .await;
    let mut ids = Vec::new();
    for obj in ["A", "B", "C"] {
        app.add_obj(obj).await;
        let (status, body) = app.upload_png(obj, "new", &png(20, 20, true)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.push(body["data"]["id"].as_i64().expect("id"));
    }
    let at2 = store_of(&app.config);
    // C's object lost; an orphan of ours (no row) at depth 1.
    let (c_uri, _) = row(&app, ids[2]).await;
    let bucket = at2.bucket().expect("bucket");
    bucket
        .delete(
            &bucket.key_of_segments(
                &at2.layout_path_of(&c_uri)
                    .expect("ours")
                    .split('/')
                    .collect::<Vec<_>>(),
            ),
        )
        .await
        .expect("delete C");
    let mut config1 = app.config.clone();
    config1.storage.depth = 1;
    let at1 = store_of(&config1);
    let orphan = layout(&RelPath::new("ORPHAN", ThumbnailType::New, 1));
    at1.write_layout(&orphan, Bytes::from_static(b"orphan"))
        .await
        .expect("orphan");
    let db = &app.db.db;

    // Audit at depth 2: two in place, one missing, one orphan; nothing changes.
    let audit = files(db, &at2, &opts(false, false, Duration::ZERO))
        .await
        .expect("audit");
    assert_eq!(
        (audit.rows, audit.in_place, audit.missing, audit.orphans),
        (3, 2, 1, 1),
        "{audit:?}"
    );
    assert_eq!(objects(&at2).await.len(), 3);

    // Repair at depth 1: A and B move (copied, repointed, old deleted); a
    // young orphan stays within the grace period, an old one goes.
    let repair = files(db, &at1, &opts(true, true, Duration::from_secs(3600)))
        .await
        .expect("repair");
    assert_eq!(
        (repair.misplaced, repair.missing, repair.failed),
        (2, 1, 0),
        "{repair:?}"
    );
    assert_eq!(
        (repair.orphans, repair.orphans_recent),
        (1, 1),
        "{repair:?}"
    );
    for (id, obj) in [(ids[0], "A"), (ids[1], "B")] {
        let (uri, url) = row(&app, id).await;
        let want = layout(&RelPath::new(obj, ThumbnailType::New, 1));
        assert_eq!(
            at1.layout_path_of(&uri).as_deref(),
            Some(want.as_str()),
            "{obj}"
        );
        assert_eq!(url, format!("/static/thumbnails/{want}"));
        assert!(object(&at1, &uri).await.is_some(), "{obj}");
    }
    let repair = files(db, &at1, &opts(true, true, Duration::ZERO))
        .await
        .expect("repair again");
    assert_eq!(
        (repair.in_place, repair.misplaced, repair.orphans_removed),
        (2, 0, 1),
        "{repair:?}"
    );
    let mut want: Vec<String> = ["A", "B"]
        .iter()
        .map(|o| layout(&RelPath::new(o, ThumbnailType::New, 1)))
        .collect();
    want.sort();
    let left = objects_settled(&at1, |got| got == want).await;
    assert_eq!(left.len(), 2, "only A's and B's objects: {left:?}");
    assert!(!left.contains(&orphan));
    app.stop().await;
}
