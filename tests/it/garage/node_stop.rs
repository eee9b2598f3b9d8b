//! One Garage node of three stopped while 10,002 alert stamps (3,334
//! alerts) and 500 uploads are written: every row's object exists and
//! reads back, nothing is dead-lettered, every upload is answered 200, and
//! no object is left without a row.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use reqwest::StatusCode;
use thumbnails::bus::ROUTING_ALERT_CUTOUTS;

use super::{objects, script, store_of, Garage};
use crate::cutouts::cutouts_json;
use crate::helpers::*;
use crate::sidecar::app::{png, TestApp};

const ALERTS: usize = 3_334;
const UPLOADS: usize = 500;

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn a_stopped_node_loses_no_stamp_and_no_upload() {
    let garage = Garage::get();
    let app = TestApp::spawn_with(|c| {
        garage.configure(c);
    })
    .await;
    let store = store_of(&app.config);
    let worker = RunningWorker::start(&app.config).await;
    for i in 0..UPLOADS {
        app.add_obj(&format!("UP{i}")).await;
    }
    // The alerts, created objects and all, published first.
    let template = cutouts_json("X").to_string();
    let bodies: Vec<Vec<u8>> = (0..ALERTS)
        .map(|i| {
            template
                .replace("\"obj_id\":\"X\"", &format!("\"obj_id\":\"AL{i}\""))
                .into_bytes()
        })
        .collect();
    assert!(String::from_utf8_lossy(&bodies[1]).contains("\"AL1\""));
    for chunk in bodies.chunks(500) {
        app.bus
            .publisher
            .publish_many(ROUTING_ALERT_CUTOUTS, chunk, true)
            .await
            .expect("publish");
    }
    // The uploads go on meanwhile, 16 at a time.
    let uploads = async {
        stream::iter(0..UPLOADS)
            .map(|i| {
                let app = &app;
                async move {
                    let (status, body) = app
                        .upload_png(
                            &format!("UP{i}"),
                            "new",
                            &png(20 + (i % 30) as u32, 20, true),
                        )
                        .await;
                    (i, status, body)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    };
    // Node 2 stops once the writes are under way.
    let node_loss = async {
        eventually("writes under way", Duration::from_secs(120), || async {
            (app.count("thumbnails").await >= 1_000).then_some(())
        })
        .await;
        tokio::task::spawn_blocking(|| script(&["kill", "2"]))
            .await
            .expect("kill");
    };
    let (answers, ()) = tokio::join!(uploads, node_loss);
    for (i, status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "upload {i}: {body}");
    }
    let want = (3 * ALERTS + UPLOADS) as i64;
    eventually(
        "every stamp and upload",
        Duration::from_secs(600),
        || async { (app.count("thumbnails").await == want).then_some(()) },
    )
    .await;
    worker.stop().await;
    assert_eq!(app.bus.queue_len(&app.bus.cutouts.dead_queue()).await, 0);

    // Every row's object is there and reads back; no object lacks a row.
    let uris: Vec<String> = app.db.file_uris().await;
    let named: BTreeSet<String> = uris
        .iter()
        .map(|u| store.layout_path_of(u).expect("a bucket uri"))
        .collect();
    let listed: BTreeSet<String> = objects(&store).await.into_iter().collect();
    assert_eq!(named.len(), want as usize);
    assert_eq!(listed, named, "objects and rows match one to one");
    let unreadable: Vec<String> = stream::iter(named.iter())
        .map(|p| {
            let store = &store;
            async move {
                match store.read_layout(p).await {
                    Ok(Some(b)) if b.starts_with(b"\x89PNG") => None,
                    other => Some(format!("{p}: {other:?}")),
                }
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(unreadable.is_empty(), "{unreadable:?}");
    tokio::task::spawn_blocking(|| script(&["start", "2"]))
        .await
        .expect("start");
    app.stop().await;
}
