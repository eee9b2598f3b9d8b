//! Every writer and reader of files on the bucket: uploads (replaced in
//! place), drawn cutouts with their kept FITS, the `alert.cutouts`
//! consumer, `DELETE`, `/static` from the bucket (ETag, 304), and
//! `public_url` under `storage.public_base_url` served by Garage's website
//! endpoint.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{object, objects, objects_settled, store_of, Garage, WEB, WEB_HOST};
use crate::cutouts::{cutouts_json, fixture, publish_alert, stamps, AVRO_ALERT};
use crate::helpers::*;
use crate::kept_fits::fits_of;
use crate::sidecar::app::{png, TestApp, MANAGER, UPLOADER};

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn uploads_stamps_and_deletes_live_in_the_bucket() {
    let garage = Garage::get();
    let mut prefix = String::new();
    let app = TestApp::spawn_with(|c| {
        prefix = garage.configure(c);
        c.cutouts.keep_fits = true;
    })
    .await;
    let store = store_of(&app.config);
    app.add_obj("ZTF1").await;

    // An upload: its row names the object, which holds the PNG's bytes.
    let first = png(40, 40, true);
    let (status, body) = app.upload_png("ZTF1", "new", &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    let (file_uri, public_url) = row(&app, id).await;
    assert!(
        file_uri.starts_with(&format!("s3://thumbnails/{prefix}/thumbnails/")),
        "{file_uri}"
    );
    assert!(
        public_url.starts_with("/static/thumbnails/"),
        "{public_url}"
    );
    assert_eq!(object(&store, &file_uri).await.as_deref(), Some(&first[..]));

    // Served from the bucket, with the store's ETag and a 304 for it.
    let (status, headers, bytes) = app.send(Method::GET, &public_url, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, first);
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age"));
    let etag = headers["etag"].to_str().expect("etag").to_string();
    let resp = app
        .client
        .get(app.url(&public_url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let (status, _, _) = app
        .send(
            Method::GET,
            "/static/thumbnails/00/00/nothing_new.png",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same upload again replaces the object in place.
    let second = png(48, 48, false);
    let (status, body) = app.upload_png("ZTF1", "new", &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["id"].as_i64(), Some(id));
    assert_eq!(
        object(&store, &file_uri).await.as_deref(),
        Some(&second[..])
    );

    // Cutouts drawn over HTTP: three stamps and their FITS beside them.
    let (status, body) = app
        .json(
            Method::POST,
            "/api/objs/ZTF1/cutouts",
            Some(UPLOADER),
            Some(&cutouts_json("ZTF1")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = stamps(&app.db, "ZTF1").await;
    let stamp_rows: Vec<_> = rows.iter().filter(|r| r.1.is_some()).collect();
    assert_eq!(stamp_rows.len(), 3, "{rows:?}");
    for (ttype, _, uri, url) in &stamp_rows {
        let png = object(&store, uri)
            .await
            .unwrap_or_else(|| panic!("{ttype}: no object"));
        assert!(png.starts_with(b"\x89PNG"), "{ttype}");
        assert!(
            object(&store, &fits_of(uri)).await.is_some(),
            "{ttype}: FITS"
        );
        let (status, _, served) = app.send(Method::GET, url, None, None).await;
        assert_eq!((status, served.len()), (StatusCode::OK, png.len()), "{url}");
    }
    assert_eq!(objects(&store).await.len(), 1 + 3 + 3);

    // DELETE removes the row and its object (and a stamp's FITS).
    let (status, body) = app.thumbnail(Method::DELETE, id, Some(MANAGER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(object(&store, &file_uri).await.is_none());
    let stamp = stamp_rows[0];
    let stamp_id = app
        .db
        .scalar_i64(&format!(
            "SELECT id::int8 FROM thumbnails WHERE file_uri = '{}'",
            stamp.2
        ))
        .await;
    let (status, _) = app
        .thumbnail(Method::DELETE, stamp_id, Some(MANAGER), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(object(&store, &stamp.2).await.is_none());
    assert!(object(&store, &fits_of(&stamp.2)).await.is_none());
    assert_eq!(objects_settled(&store, |got| got.len() == 4).await.len(), 4);

    // Nothing went to the local folder.
    assert!(app.files().is_empty(), "{:?}", app.files());
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn alerts_from_the_queue_are_stored_in_the_bucket() {
    let garage = Garage::get();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let mut config = bus.config(&db, "");
    let local = tempfile::tempdir().expect("tempdir");
    config.storage.root = local.path().to_path_buf();
    garage.configure(&mut config);
    let store = store_of(&config);
    let listener = bus.listen_stored().await;
    let worker = RunningWorker::start(&config).await;
    publish_alert(&bus, &fixture(AVRO_ALERT), Some("avro/binary")).await;
    publish_alert(
        &bus,
        cutouts_json("ZTF-json").to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    eventually("six stamps", std::time::Duration::from_secs(60), || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 6).then_some(())
    })
    .await;
    let events = eventually("two events", std::time::Duration::from_secs(30), || async {
        let got = bus.drain(&listener).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(!events.is_empty());
    worker.stop().await;
    for obj in ["ZTF18aaxjdyr", "ZTF-json"] {
        for (ttype, _, uri, _) in stamps(&db, obj).await {
            let png = object(&store, &uri).await;
            assert!(
                png.as_deref().is_some_and(|b| b.starts_with(b"\x89PNG")),
                "{obj} {ttype}: {uri}"
            );
        }
    }
    assert_eq!(objects(&store).await.len(), 6);
    assert_eq!(bus.queue_len(&bus.cutouts.dead_queue()).await, 0);
    assert!(crate::sidecar::app::files_under(local.path()).is_empty());
    bus.delete().await;
}

#[tokio::test]
#[ignore = "needs Garage (scripts/garage up): cargo test --test it garage -- --ignored --test-threads=1"]
async fn public_urls_are_under_the_base_and_the_website_serves_them() {
    let garage = Garage::get();
    let mut prefix = String::new();
    let app = TestApp::spawn_with(|c| {
        prefix = garage.configure(c);
        c.storage.public_base_url = Some(format!("{WEB}/{prefix}/"));
    })
    .await;
    app.add_obj("ZTF2").await;
    let bytes = png(32, 32, true);
    let (status, body) = app.upload_png("ZTF2", "ref", &bytes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    let (_, public_url) = row(&app, id).await;
    assert!(
        public_url.starts_with(&format!("{WEB}/{prefix}/thumbnails/")),
        "{public_url}"
    );
    // What a browser does: fetch public_url (Garage picks the bucket from
    // the Host header, as a DNS name pointing at the website would).
    let resp = app
        .client
        .get(&public_url)
        .header("Host", WEB_HOST)
        .send()
        .await
        .expect("website");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &bytes[..]);
    // The event carries the same URL.
    let events: Vec<Value> = app.events(1).await;
    assert_eq!(
        events[0]["thumbnails"][0]["public_url"],
        public_url.as_str()
    );
    app.stop().await;
}

/// `(file_uri, public_url)` of a row.
pub async fn row(app: &TestApp, id: i64) -> (String, String) {
    use sea_orm::ConnectionTrait;
    let r = app
        .db
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT file_uri, public_url FROM thumbnails WHERE id = {id}"),
        ))
        .await
        .expect("select")
        .expect("row");
    (
        r.try_get_by_index(0).expect("file_uri"),
        r.try_get_by_index(1).expect("public_url"),
    )
}
