//! `POST /api/thumbnail`: good uploads, every bad input, replacement.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::app::*;

#[tokio::test]
async fn good_upload_stores_file_row_event_and_serves_same_bytes() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF21aaaaaaa").await;
    let png = png(64, 48, true);

    // Exactly what a SkyPortal client sends: base64 JSON, `token` header.
    let (status, body) = app
        .upload(
            Some(UPLOADER),
            &json!({"obj_id": "ZTF21aaaaaaa", "data": b64(&png), "ttype": "new", "survey": "ZTF"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    let id = body["data"]["id"].as_i64().expect("id");

    // The file, at the hashed path, with the same bytes.
    let h = hex::encode(Sha256::digest(b"ZTF21aaaaaaa"));
    // An alert stamp's file names its survey.
    let rel = format!(
        "thumbnails/{}/{}/ZTF21aaaaaaa_new_ZTF.png",
        &h[0..2],
        &h[2..4]
    );
    let path = app.storage.path().join(&rel);
    assert_eq!(app.files(), vec![path.clone()]);
    assert_eq!(std::fs::read(&path).expect("file"), png);

    // The row.
    let (status, row) = app.thumbnail(Method::GET, id, Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{row}");
    let row = &row["data"];
    assert_eq!(row["id"], id);
    assert_eq!(row["obj_id"], "ZTF21aaaaaaa");
    assert_eq!(row["type"], "new");
    assert_eq!(row["origin"], "upload");
    assert_eq!(row["survey"], "ZTF");
    assert_eq!(row["is_grayscale"], false);
    assert_eq!(row["public_url"], format!("/static/{rel}"));
    assert_eq!(row["file_uri"], path.to_string_lossy().as_ref());
    assert!(std::path::Path::new(row["file_uri"].as_str().expect("file_uri")).is_absolute());
    assert!(row["created_at"].is_string() && row["modified"].is_string());

    // The event.
    let events = app.events(1).await;
    assert_eq!(
        events,
        vec![json!({"obj_id": "ZTF21aaaaaaa", "thumbnails": [{
            "id": id, "type": "new",
            "public_url": format!("/static/{rel}"),
            "file_uri": path.to_string_lossy(), "origin": "upload", "survey": "ZTF",
        }]})]
    );
    assert_eq!(app.count("thumbnail_outbox").await, 0);

    // The same bytes back from /static, with caching headers.
    let (status, headers, bytes) = app
        .send(Method::GET, &format!("/static/{rel}"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, png);
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age"));
    let etag = headers["etag"].clone();
    let resp = app
        .client
        .get(app.url(&format!("/static/{rel}")))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("conditional get");
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    app.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_skyportal_messages_and_leave_nothing() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF1").await;
    let ok = b64(&png(32, 32, false));
    let jpeg = encode(
        &image::DynamicImage::ImageRgb8(image::RgbImage::new(32, 32)),
        image::ImageFormat::Jpeg,
    );
    let truncated = png(64, 64, true)[..100].to_vec();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "not an image",
            json!({"obj_id": "ZTF1", "data": b64(b"hello, world"), "ttype": "new"}),
            "cannot identify image file",
        ),
        (
            "empty data",
            json!({"obj_id": "ZTF1", "data": "", "ttype": "new"}),
            "cannot identify image file",
        ),
        (
            "truncated PNG",
            json!({"obj_id": "ZTF1", "data": b64(&truncated), "ttype": "new"}),
            "cannot identify image file",
        ),
        (
            "JPEG",
            json!({"obj_id": "ZTF1", "data": b64(&jpeg), "ttype": "new"}),
            "Invalid thumbnail image type. Only PNG are supported.",
        ),
        (
            "too small",
            json!({"obj_id": "ZTF1", "data": b64(&png(15, 32, false)), "ttype": "new"}),
            "Invalid thumbnail size. Only thumbnails between (16, 16) and (500, 500) allowed.",
        ),
        (
            "too big",
            json!({"obj_id": "ZTF1", "data": b64(&png(32, 501, false)), "ttype": "new"}),
            "Invalid thumbnail size. Only thumbnails between (16, 16) and (500, 500) allowed.",
        ),
        (
            "decompression bomb",
            json!({"obj_id": "ZTF1", "data": b64(&png_claiming(100_000, 100_000)), "ttype": "new"}),
            "Invalid thumbnail size.",
        ),
        (
            "unknown ttype",
            json!({"obj_id": "ZTF1", "data": ok, "ttype": "bogus"}),
            "is not among the defined enum values",
        ),
        (
            "traversal ttype",
            json!({"obj_id": "ZTF1", "data": ok, "ttype": "../../etc/passwd"}),
            "is not among the defined enum values",
        ),
        (
            "unknown obj_id",
            json!({"obj_id": "ZTF404", "data": ok, "ttype": "new"}),
            "Invalid obj_id: ZTF404",
        ),
        (
            "bad base64",
            json!({"obj_id": "ZTF1", "data": "!!not base64!!", "ttype": "new"}),
            "not valid base64",
        ),
        (
            "missing data",
            json!({"obj_id": "ZTF1", "ttype": "new"}),
            "missing field `data`",
        ),
        (
            "missing obj_id",
            json!({"data": ok, "ttype": "new"}),
            "missing field `obj_id`",
        ),
        (
            "unknown field",
            json!({"obj_id": "ZTF1", "data": ok, "ttype": "new", "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            "wrong type",
            json!({"obj_id": 12, "data": ok, "ttype": "new"}),
            "Invalid/missing parameters",
        ),
        (
            "not an object",
            json!([1, 2, 3]),
            "Invalid/missing parameters",
        ),
    ];
    for (what, body, expected) in cases {
        let (status, answer) = app.upload(Some(UPLOADER), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["status"], "error", "{what}");
        let msg = message(&answer);
        assert!(
            msg.starts_with("Thumbnail failed to post: "),
            "{what}: {msg}"
        );
        assert!(msg.contains(expected), "{what}: {msg:?} lacks {expected:?}");
        app.assert_nothing_stored(what).await;
    }
    // Not JSON at all.
    let (status, _, bytes) = app
        .send(
            Method::POST,
            "/api/thumbnail",
            Some(UPLOADER),
            Some(b"{nope".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("Invalid/missing parameters"));
    app.assert_nothing_stored("not JSON").await;
    assert!(
        app.bus.drain(&app.stored_queue).await.is_empty(),
        "no event for a refused upload"
    );
    app.stop().await;
}

#[tokio::test]
async fn second_upload_replaces_first_keeping_id() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF2").await;
    let (first, second) = (png(32, 32, true), png(40, 40, false));
    let (s1, a1) = app.upload_png("ZTF2", "ref", &first).await;
    let (s2, a2) = app.upload_png("ZTF2", "ref", &second).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{a1} {a2}");
    assert_eq!(a1["data"]["id"], a2["data"]["id"]);
    assert_eq!(app.count("thumbnails").await, 1);
    let files = app.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).expect("file"), second);
    let (_, row) = app
        .thumbnail(Method::GET, &a1["data"]["id"], Some(READER), None)
        .await;
    assert_eq!(
        row["data"]["is_grayscale"], true,
        "the new image's classification"
    );
    let url = row["data"]["public_url"].as_str().expect("url").to_string();
    let (_, _, bytes) = app.send(Method::GET, &url, None, None).await;
    assert_eq!(bytes, second);
    assert_eq!(app.events(2).await.len(), 2);

    // Another type of the same object is another row and file.
    let (s3, a3) = app.upload_png("ZTF2", "sub", &first).await;
    assert_eq!(s3, StatusCode::OK);
    assert_ne!(a3["data"]["id"], a1["data"]["id"]);
    assert_eq!(app.files().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn every_enum_type_is_accepted_and_grayscale_is_classified() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF3").await;
    for (i, t) in [
        "new", "ref", "sub", "sdss", "dr8", "ls", "ps1", "sm", "hst", "chandra", "jwst", "new_gz",
        "ref_gz", "sub_gz",
    ]
    .iter()
    .enumerate()
    {
        let colour = i % 2 == 0;
        let (status, body) = app
            .upload_png("ZTF3", t, &png(16 + i as u32, 500, colour))
            .await;
        assert_eq!(status, StatusCode::OK, "{t}: {body}");
    }
    let (_, list) = app
        .json(Method::GET, "/api/objs/ZTF3/thumbnails", Some(READER), None)
        .await;
    let rows = list["data"].as_array().expect("list");
    assert_eq!(rows.len(), 14);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["is_grayscale"], i % 2 != 0, "{row}");
        assert_eq!(row["origin"], "upload");
    }
    app.stop().await;
}

#[tokio::test]
async fn body_limit_is_http_max_body_bytes_with_413_beyond() {
    // Above axum's 2 MB default, below the configured 10 MiB: accepted.
    let app = TestApp::spawn().await;
    app.add_obj("ZTF4").await;
    let data = b64(&png(32, 32, false));
    let padded = format!(
        "{{\"obj_id\": \"ZTF4\", {}\"data\": \"{data}\", \"ttype\": \"new\"}}",
        " ".repeat(3 * 1024 * 1024)
    );
    let (status, _, bytes) = app
        .send(
            Method::POST,
            "/api/thumbnail",
            Some(UPLOADER),
            Some(padded.into_bytes()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    app.stop().await;

    let app = TestApp::spawn_with(|c| c.http.max_body_bytes = 64 * 1024).await;
    app.add_obj("ZTF4").await;
    let big = json!({"obj_id": "ZTF4", "data": "A".repeat(100 * 1024), "ttype": "new"});
    let (status, answer) = app.upload(Some(UPLOADER), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        message(&answer).contains("larger than 65536 bytes"),
        "{answer}"
    );
    // Streamed without a length (chunked): refused too.
    let mut req = format!(
        "POST /api/thumbnail HTTP/1.1\r\nHost: t\r\nAuthorization: token {UPLOADER}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..100 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b' '; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = app.raw(&req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    app.assert_nothing_stored("too large").await;
    // A small upload still works.
    let (status, _) = app.upload_png("ZTF4", "new", &png(16, 16, false)).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
