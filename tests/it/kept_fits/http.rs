//! `cutouts.keep_fits` through the sidecar: `POST /api/objs/{id}/cutouts`,
//! `/static`, `DELETE /api/thumbnail/{id}` and a custom upload.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{fits_files, fits_of, gz, rows};
use crate::cutouts::{b64, cutouts_json};
use crate::sidecar::app::{png, TestApp, MANAGER, UPLOADER};

#[tokio::test]
async fn kept_fits_are_served_and_removed_with_their_rows_over_http() {
    let app = TestApp::spawn_with(|c| c.cutouts.keep_fits = true).await;
    app.add_obj("ZTF-http-keep").await;
    let (status, reply) = app
        .json(
            Method::POST,
            "/api/objs/ZTF-http-keep/cutouts",
            Some(UPLOADER),
            Some(&cutouts_json("ignored")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let events = app.events(3).await;
    let fits_url = |ttype: &str| -> String {
        events
            .iter()
            .flat_map(|e| e["thumbnails"].as_array().cloned().unwrap_or_default())
            .find(|t| t["type"] == ttype)
            .and_then(|t| t["fits_url"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("{ttype}: fits_url in {events:?}"))
    };
    let rows = rows(&app.db, "ZTF-http-keep").await;
    for (ttype, _, file_uri, public_url) in &rows {
        assert_eq!(fits_url(ttype), fits_of(public_url));
        assert!(Path::new(&fits_of(file_uri)).is_file(), "{ttype}");
    }
    assert_eq!(app.files().len(), 6);

    // Served under /static as the gzip bytes themselves.
    let (status, headers, body) = app.send(Method::GET, &fits_url("ref"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/gzip");
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(body, gz("cutoutTemplate"));
    let (_, headers, _) = app.send(Method::GET, &rows[0].3, None, None).await;
    assert_eq!(headers["content-type"], "image/png");

    // DELETE removes the PNG and its FITS.
    let (new_id, new_file) = (rows[0].1, rows[0].2.clone());
    let (status, reply) = app
        .thumbnail(Method::DELETE, new_id, Some(MANAGER), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(!Path::new(&new_file).exists() && !Path::new(&fits_of(&new_file)).exists());
    let (status, _, _) = app.send(Method::GET, &fits_url("new"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A custom PNG over the sub stamp: the stale FITS goes, the row stays.
    let (sub_id, sub_file) = (rows[2].1, rows[2].2.clone());
    let custom = json!({"obj_id": "ZTF-http-keep", "data": b64(&png(64, 64, true)),
                        "ttype": "sub", "survey": "ZTF"});
    let (status, reply) = app.upload(Some(UPLOADER), &custom).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["id"].as_i64(), Some(i64::from(sub_id)));
    let event = app.events(1).await;
    assert!(
        event[0]["thumbnails"][0].get("fits_url").is_none(),
        "{event:?}"
    );
    assert!(Path::new(&sub_file).is_file());
    assert!(!Path::new(&fits_of(&sub_file)).exists());
    // Left: the ref stamp with its FITS, and the custom sub PNG.
    assert_eq!(app.files().len(), 3);
    assert_eq!(fits_files(app.storage.path()).len(), 1);
    app.stop().await;
}
