//! `POST /api/objs/{obj_id}/cutouts` and FITS in `POST /api/thumbnail`,
//! on the real ZTF fixtures.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::app::*;
use crate::cutouts::{cutouts_json, fixture, OTHER_ALERT};

#[tokio::test]
async fn cutouts_are_drawn_per_cutout_and_replaced_in_place() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF-http").await;
    let mut body = cutouts_json("ignored");
    body["cutoutTemplate"] = json!("%%% not base64");
    let path = "/api/objs/ZTF-http/cutouts";
    let (status, reply) = app
        .json(Method::POST, path, Some(UPLOADER), Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let data = &reply["data"];
    let sci = data["cutoutScience"]["id"].as_i64().expect("science id");
    assert!(data["cutoutDifference"]["id"].is_i64(), "{reply}");
    assert_eq!(data["cutoutTemplate"]["type"], "ref");
    assert!(
        data["cutoutTemplate"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("base64")),
        "{reply}"
    );
    assert_eq!(app.count("thumbnails").await, 2);
    let files = app.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("ZTF-http_new_ZTF.png")));
    // Again: same rows.
    let (status, again) = app
        .json(Method::POST, path, Some(UPLOADER), Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["data"]["cutoutScience"]["id"].as_i64(), Some(sci));
    assert_eq!(app.count("thumbnails").await, 2);

    // Nothing drawable: 400, nothing written.
    let bad = json!({"survey": "ZTF", "cutoutScience": b64(b"neither gzip nor FITS")});
    let (status, reply) = app
        .json(Method::POST, path, Some(UPLOADER), Some(&bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("neither gzip nor FITS")),
        "{reply}"
    );
    for (body, what) in [
        (json!({"cutoutScience": "AAAA"}), "survey"),
        (json!({"survey": "ZTF"}), "no cutouts"),
    ] {
        let (status, reply) = app
            .json(Method::POST, path, Some(UPLOADER), Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {reply}");
    }
    let (status, _) = app
        .json(
            Method::POST,
            "/api/objs/nobody/cutouts",
            Some(UPLOADER),
            Some(&body),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .json(Method::POST, path, Some(READER), Some(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("thumbnails").await, 2);
    assert_eq!(app.files().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_fits_cutout_posted_as_a_thumbnail_is_drawn() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF-fits").await;
    let gz = fixture(&format!("{OTHER_ALERT}_cutoutDifference.fits.gz"));
    let body = json!({"obj_id": "ZTF-fits", "data": b64(&gz), "ttype": "sub", "survey": "ZTF"});
    let (status, reply) = app.upload(Some(UPLOADER), &body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let png = std::fs::read(&app.files()[0]).expect("file");
    let img = image::load_from_memory(&png).expect("png");
    assert_eq!((img.width(), img.height()), (168, 168));
    // Truncated FITS: a clear 400, nothing written.
    let body = json!({"obj_id": "ZTF-fits", "data": b64(&gz[..gz.len() / 2]), "ttype": "new"});
    let (status, reply) = app.upload(Some(UPLOADER), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("Invalid cutout")),
        "{reply}"
    );
    assert_eq!(app.count("thumbnails").await, 1);
    app.stop().await;
}
