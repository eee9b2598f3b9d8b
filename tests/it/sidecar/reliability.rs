//! Failures in the middle of an upload leave nothing half-done, and the
//! outbox republishes events whose publish never happened.

use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;

use super::app::*;

#[tokio::test]
async fn a_database_failure_during_upload_leaves_no_file() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF12").await;
    // The outbox insert, after the thumbnail row, fails: the transaction
    // must roll back and the staged file must go.
    app.db
        .db
        .execute_unprepared("ALTER TABLE thumbnail_outbox RENAME TO thumbnail_outbox_away")
        .await
        .expect("rename");
    let (status, body) = app.upload_png("ZTF12", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let msg = message(&body);
    assert!(msg.contains("cannot record the thumbnail in the database"), "{msg}");
    assert!(!msg.contains("thumbnail_outbox"), "internals must not leak: {msg}");
    assert_eq!(app.files(), Vec::<std::path::PathBuf>::new());
    assert_eq!(app.count("thumbnails").await, 0);

    // The service stays up and works once the database does.
    app.db
        .db
        .execute_unprepared("ALTER TABLE thumbnail_outbox_away RENAME TO thumbnail_outbox")
        .await
        .expect("rename back");
    let (status, body) = app.upload_png("ZTF12", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.files().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_replace_keeps_the_previous_file() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF13").await;
    let first = png(32, 32, true);
    let (status, _) = app.upload_png("ZTF13", "new", &first).await;
    assert_eq!(status, StatusCode::OK);
    app.db
        .db
        .execute_unprepared("ALTER TABLE thumbnail_outbox RENAME TO thumbnail_outbox_away")
        .await
        .expect("rename");
    let (status, _) = app.upload_png("ZTF13", "new", &png(40, 40, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let files = app.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).expect("file"), first);
    app.stop().await;
}

#[tokio::test]
async fn an_unwritable_storage_root_leaves_no_row() {
    let blocker = tempfile::NamedTempFile::new().expect("file");
    let root = blocker.path().join("store");
    let app = TestApp::spawn_with(|c| c.storage.root = root.clone()).await;
    app.add_obj("ZTF14").await;
    let (status, body) = app.upload_png("ZTF14", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(message(&body).contains("cannot write the file to storage"), "{body}");
    assert!(!message(&body).contains(&*blocker.path().to_string_lossy()), "no paths in answers: {body}");
    assert_eq!(app.count("thumbnails").await, 0);
    assert_eq!(app.count("thumbnail_outbox").await, 0);
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn leftover_outbox_events_are_republished() {
    let app = TestApp::spawn().await;
    // As if the process died between commit and publish.
    app.db
        .db
        .execute_unprepared(
            "INSERT INTO thumbnail_outbox (routing_key, body, created_at) VALUES
               ('thumbnail.stored', '{\"id\": 1, \"obj_id\": \"a\"}', now()),
               ('thumbnail.stored', '{\"id\": 2, \"obj_id\": \"b\"}', now())",
        )
        .await
        .expect("seed outbox");
    let events = app.events(2).await;
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, vec![1, 2]);
    crate::helpers::eventually("an empty outbox", WAIT, || async {
        (app.count("thumbnail_outbox").await == 0).then_some(())
    })
    .await;
    app.stop().await;
}
