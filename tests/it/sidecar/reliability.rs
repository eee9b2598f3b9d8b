//! Failures in the middle of an upload leave nothing half-done, and the
//! outbox republishes events whose publish never happened.

use std::time::Duration;

use lapin::options::ExchangeDeleteOptions;
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use thumbnails::sidecar::ServeOptions;
use thumbnails::store::outbox;

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
    assert!(
        msg.contains("cannot record the thumbnail in the database"),
        "{msg}"
    );
    assert!(
        !msg.contains("thumbnail_outbox"),
        "internals must not leak: {msg}"
    );
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
async fn a_failed_commit_puts_the_previous_file_back() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF13").await;
    let first = png(32, 32, true);
    let (status, body) = app.upload_png("ZTF13", "new", &first).await;
    assert_eq!(status, StatusCode::OK);
    let id = body["data"]["id"].as_i64().expect("id");
    // Every statement succeeds; the COMMIT itself fails (deferred trigger),
    // after the new file was renamed into place.
    app.db
        .db
        .execute_unprepared(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'commit refused'; END $$;
             CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON thumbnail_outbox
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit();",
        )
        .await
        .expect("trigger");
    let (status, body) = app.upload_png("ZTF13", "new", &png(40, 40, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (status, body) = app.upload_png("ZTF13", "ref", &png(40, 40, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    // The first file is back, unchanged; the new type left nothing.
    let files = app.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).expect("file"), first);
    assert_eq!(app.count("thumbnails").await, 1);
    let (_, row) = app.thumbnail(Method::GET, id, Some(READER), None).await;
    assert_eq!(
        row["data"]["is_grayscale"], false,
        "the row still describes the first file"
    );
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
    assert!(
        message(&body).contains("cannot write the file to storage"),
        "{body}"
    );
    assert!(
        !message(&body).contains(&*blocker.path().to_string_lossy()),
        "no paths in answers: {body}"
    );
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
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![1, 2]);
    crate::helpers::eventually("an empty outbox", WAIT, || async {
        (app.count("thumbnail_outbox").await == 0).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_event_whose_publish_fails_is_kept_and_relayed() {
    // No relay rounds of its own: the test runs the relay itself.
    let app = TestApp::spawn_with_options(
        |_| {},
        ServeOptions {
            outbox_interval: Duration::from_secs(3600),
            shutdown_deadline: Duration::from_secs(5),
        },
    )
    .await;
    app.add_obj("ZTF16").await;
    let (status, _) = app.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    // The exchange disappears: the publish after the commit fails.
    app.bus
        .channel
        .exchange_delete(
            app.bus.topology.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete exchange");
    let (status, body) = app.upload_png("ZTF16", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::OK, "the row is committed: {body}");
    let id = body["data"]["id"].as_i64().expect("id");
    assert_eq!(
        app.count("thumbnail_outbox").await,
        1,
        "the event waits in the outbox"
    );

    // The broker is back; the relay publishes the kept event.
    thumbnails::bus::declare(&app.bus.channel, &app.bus.topology)
        .await
        .expect("declare");
    let queue = app.bus.listen_stored().await;
    let link = thumbnails::bus::BusLink::connect(&app.config.amqp, "it-relay")
        .await
        .expect("link");
    assert_eq!(outbox::relay(&app.db.db, &link).await.expect("relay"), 1);
    link.close().await;
    assert_eq!(app.count("thumbnail_outbox").await, 0);
    let events = app.events(1).await;
    assert_eq!(queue, app.stored_queue);
    assert_eq!(events[0]["thumbnails"][0]["id"], id);
    assert_eq!(events[0]["thumbnails"][0]["origin"], "upload");

    // The app's own link reconnects for the next upload.
    let (status, _) = app.upload_png("ZTF16", "ref", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.events(1).await[0]["thumbnails"][0]["type"], "ref");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_uploads_of_one_type_leave_one_row_and_one_file() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF17").await;
    let images: Vec<Vec<u8>> = (0..8).map(|i| png(20 + i, 20 + i, i % 2 == 0)).collect();
    let answers = futures_util::future::join_all(
        images.iter().map(|img| app.upload_png("ZTF17", "new", img)),
    )
    .await;
    let ids: Vec<i64> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, StatusCode::OK, "{b}");
            b["data"]["id"].as_i64().expect("id")
        })
        .collect();
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    assert_eq!(app.count("thumbnails").await, 1);
    let files = app.files();
    assert_eq!(files.len(), 1, "no temp or backup files left: {files:?}");
    let stored = std::fs::read(&files[0]).expect("file");
    let winner = images
        .iter()
        .position(|i| *i == stored)
        .expect("one of the uploads");
    // The row describes the file that won.
    let (_, row) = app.thumbnail(Method::GET, ids[0], Some(READER), None).await;
    assert_eq!(row["data"]["is_grayscale"], winner % 2 != 0, "{row}");
    app.stop().await;
}
