//! Tokens and scopes; obj_ids and paths that try to leave the storage root.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::app::*;

#[tokio::test]
async fn missing_or_unknown_token_is_401_and_wrong_scope_is_403() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF8").await;
    let body = json!({"obj_id": "ZTF8", "data": b64(&png(32, 32, false)), "ttype": "new"});

    for token in [None, Some("not-a-configured-token")] {
        let (status, answer) = app.upload(token, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["status"], "error");
        let (status, _) = app
            .json(Method::GET, "/api/objs/ZTF8/thumbnails", token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app.json(Method::GET, "/api/thumbnail/1", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A malformed header is a missing token.
    let resp = app
        .client
        .get(app.url("/api/objs/ZTF8/thumbnails"))
        .header("Authorization", format!("Basic {READER}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Reader and manager may not upload.
    for token in [READER, MANAGER] {
        let (status, answer) = app.upload(Some(token), &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(message(&answer).contains("upload"), "{answer}");
    }
    app.assert_nothing_stored("refused uploads").await;

    let (status, a) = app.upload(Some(UPLOADER), &body).await;
    assert_eq!(status, StatusCode::OK);
    let id = a["data"]["id"].clone();

    // Uploader and reader may read but not edit or delete.
    for token in [UPLOADER, READER] {
        let (status, _) = app.thumbnail(Method::GET, &id, Some(token), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, answer) = app
            .thumbnail(Method::PUT, &id, Some(token), Some(&json!({"origin": "x"})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        let (status, _) = app.thumbnail(Method::DELETE, &id, Some(token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for method in [Method::PUT, Method::DELETE] {
        let (status, _) = app.thumbnail(method, &id, None, Some(&json!({}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.count("thumbnails").await, 1);
    assert_eq!(app.files().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn without_tokens_the_api_refuses_writes() {
    let app = TestApp::spawn_with(|c| c.http.tokens.clear()).await;
    app.add_obj("ZTF9").await;
    let body = json!({"obj_id": "ZTF9", "data": b64(&png(32, 32, false)), "ttype": "new"});
    for token in [None, Some(UPLOADER)] {
        let (status, answer) = app.upload(token, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    let (_, answer) = app.upload(Some(UPLOADER), &body).await;
    assert!(
        message(&answer).contains("no API tokens are configured"),
        "{answer}"
    );
    app.assert_nothing_stored("no tokens").await;
    // Public routes still answer.
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn crafted_obj_ids_never_escape_the_storage_root() {
    let app = TestApp::spawn().await;
    let ids = [
        "../../etc/passwd",
        "/etc/passwd",
        "%2e%2e%2f%2e%2e",
        "..",
        ".hidden",
        "a\\b",
        "SN 2021abc",
        "ünï/cødé",
    ];
    let png = png(20, 20, true);
    for id in ids {
        app.add_obj(id).await;
        let (status, answer) = app.upload_png(id, "new", &png).await;
        assert_eq!(status, StatusCode::OK, "{id}: {answer}");
        let (_, row) = app
            .thumbnail(Method::GET, &answer["data"]["id"], Some(READER), None)
            .await;
        let file = std::path::PathBuf::from(row["data"]["file_uri"].as_str().expect("file_uri"));
        let root = app.storage.path().join("thumbnails");
        assert!(file.starts_with(&root), "{id}: {}", file.display());
        assert_eq!(
            file.components().count(),
            root.components().count() + 3,
            "{id}"
        );
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.starts_with('.') && name.ends_with("_new.png"),
            "{id}: {name}"
        );
        // And it is served back from its public_url.
        let url = row["data"]["public_url"].as_str().expect("url").to_string();
        let (status, _, bytes) = app.send(Method::GET, &url, None, None).await;
        assert_eq!(
            (status, bytes == png),
            (StatusCode::OK, true),
            "{id}: {url}"
        );
    }
    assert_eq!(app.files().len(), ids.len());
    // A NUL can be neither an obj_id nor a file name.
    let (status, answer) = app.upload_png("a\0b", "new", &png).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(message(&answer).contains("Invalid obj_id"));
    assert_eq!(app.files().len(), ids.len());
    app.stop().await;
}

#[tokio::test]
async fn static_requests_cannot_escape_the_root() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF10").await;
    let (status, _) = app.upload_png("ZTF10", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::OK);
    // A secret next to the uploads folder.
    std::fs::write(app.storage.path().join("secret.txt"), b"TOP-SECRET-CONTENT").expect("write");

    for path in [
        "/static/thumbnails/..%2fsecret.txt",
        "/static/thumbnails/%2e%2e/secret.txt",
        "/static/thumbnails/%2e%2e%2fsecret.txt",
        "/static/thumbnails/..%5csecret.txt",
        "/static/thumbnails/%2fetc%2fpasswd",
        "/static/thumbnails/ab/%00/x.png",
        "/static/thumbnails/.upload-x.tmp",
        "/static/thumbnails/%FF%FE.png",
    ] {
        let (status, _, bytes) = app.send(Method::GET, path, None, None).await;
        assert!(status.is_client_error(), "{path}: {status}");
        let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error");
        assert_eq!(answer["status"], "error", "{path}");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("TOP-SECRET"),
            "{path}"
        );
    }
    // Raw request lines that a client would normalise.
    for line in [
        "GET /static/thumbnails/../secret.txt HTTP/1.1",
        "GET /static/thumbnails/../../../../etc/passwd HTTP/1.1",
        "GET /static/thumbnails/ab/../../secret.txt HTTP/1.1",
    ] {
        let answer = app
            .raw(format!("{line}\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{line}: {answer}");
        assert!(
            !answer.contains("TOP-SECRET") && !answer.contains("root:"),
            "{line}: {answer}"
        );
    }
    // Missing files and folders are 404.
    let dir = app.files()[0]
        .parent()
        .expect("dir")
        .strip_prefix(app.storage.path())
        .expect("rel")
        .to_string_lossy()
        .into_owned();
    for path in [
        "/static/thumbnails/ab/cd/missing_new.png".to_string(),
        format!("/static/{dir}"),
        format!("/static/{dir}/"),
    ] {
        let (status, _, _) = app.send(Method::GET, &path, None, None).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
            "{path}: {status}"
        );
    }
    let (status, _, _) = app
        .send(
            Method::GET,
            "/static/thumbnails/ab/cd/missing_new.png",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn tokens_never_appear_in_logs_of_the_sidecar_command() {
    // The real `thumbnails sidecar` process, logging at trace level.
    let sidecar =
        crate::running::TracedSidecar::start(&[(UPLOADER, "upload"), (MANAGER, "manage")]).await;
    let base = format!("http://127.0.0.1:{}", sidecar.port);
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");

    sidecar.db.add_obj("ZTF18").await;
    let near_miss = "uploader-token-0002";
    let body = serde_json::to_vec(
        &json!({"obj_id": "ZTF18", "data": b64(&png(32, 32, false)), "ttype": "new"}),
    )
    .expect("json");
    for (token, expected) in [(UPLOADER, 200), (near_miss, 401), (MANAGER, 403)] {
        let r = client
            .post(format!("{base}/api/thumbnail"))
            .header("Authorization", format!("token {token}"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), expected, "{token}");
    }
    let r = client
        .delete(format!("{base}/api/thumbnail/1"))
        .header("Authorization", format!("token {MANAGER}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);

    // SIGTERM: the one shutdown path.
    let text = sidecar.stop().await;
    assert!(
        text.contains("thumbnail uploaded") && text.contains("sidecar stopped"),
        "{text}"
    );
    for token in [UPLOADER, MANAGER, near_miss] {
        assert!(!text.contains(token), "{token} was logged");
    }
}
