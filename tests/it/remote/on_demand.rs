//! `POST /api/objs/{obj_id}/thumbnails/{type}` against local stand-ins.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use thumbnails::surveys::{CURRENTLY_UNAVAILABLE, OUTSIDE_SURVEY};

use super::standin::ImageServer;
use crate::sidecar::app::{message, TestApp, MANAGER, READER, UPLOADER};

async fn make(
    app: &TestApp,
    obj_id: &str,
    ttype: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    app.json(
        Method::POST,
        &format!("/api/objs/{obj_id}/thumbnails/{ttype}"),
        token,
        None,
    )
    .await
}

#[tokio::test]
async fn resolves_checks_and_stores_on_demand_thumbnails() {
    let s = ImageServer::start().await;
    let app = TestApp::spawn_with(|c| {
        c.on_demand.sm.lookup_url = s.url("/siap?POS={ra},{dec}&SIZE=0.0264&RESPONSEFORMAT=CSV");
        c.on_demand.hst.template = s.url("/grey.png?ra={ra}&dec={dec}&size=256&format=png");
        c.on_demand.chandra.template = String::new();
        c.on_demand.jwst.template = s.url("/then-fail.jpg?ra={ra}&dec={dec}");
    })
    .await;
    app.add_obj("ZTF1").await;

    // sm: the SIAP CSV's first row names the PNG; it is fetched and classified.
    let (status, body) = make(&app, "ZTF1", "sm", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let row = &body["data"];
    assert_eq!(row["type"], "sm");
    assert_eq!(
        row["public_url"],
        s.url("/colour.png?POS=10.0,20.0&SIZE=0.0264&RESPONSEFORMAT=CSV")
    );
    assert_eq!(row["is_grayscale"], false);
    assert_eq!((s.hits("/siap"), s.hits("/colour.png")), (1, 1));

    // hst: a template.
    let (status, body) = make(&app, "ZTF1", "hst", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["data"]["public_url"],
        s.url("/grey.png?ra=10.0&dec=20.0&size=256&format=png")
    );
    assert_eq!(body["data"]["is_grayscale"], true);

    // chandra: no template, no outbound call, a placeholder.
    let before = s.total_hits();
    let (status, body) = make(&app, "ZTF1", "chandra", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["public_url"], CURRENTLY_UNAVAILABLE);
    assert_eq!(body["data"]["is_grayscale"], Value::Null);
    assert_eq!(s.total_hits(), before);

    // jwst: an image, then a failed second attempt keeps it (same row).
    let (_, first) = make(&app, "ZTF1", "jwst", Some(UPLOADER)).await;
    assert_eq!(
        first["data"]["public_url"],
        s.url("/then-fail.jpg?ra=10.0&dec=20.0")
    );
    let (status, again) = make(&app, "ZTF1", "jwst", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["data"], first["data"]);
    assert_eq!(s.hits("/then-fail.jpg"), 2);

    // One row per type, each announced once (the kept one not again).
    assert_eq!(app.count("thumbnails").await, 4);
    let events = app.events(4).await;
    let mut types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["thumbnails"][0]["type"].as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["chandra", "hst", "jwst", "sm"]);

    // Asking again rewrites the row in place.
    let (_, hst_again) = make(&app, "ZTF1", "hst", Some(UPLOADER)).await;
    assert_eq!(hst_again["data"]["id"], body_id(&app, "hst").await);
    assert_eq!(app.count("thumbnails").await, 4);
    app.stop().await;
}

async fn body_id(app: &TestApp, ttype: &str) -> Value {
    let (_, list) = app
        .json(Method::GET, "/api/objs/ZTF1/thumbnails", Some(READER), None)
        .await;
    list["data"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["type"] == ttype))
        .map(|r| r["id"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn bad_remote_answers_become_placeholders() {
    let s = ImageServer::start().await;
    let app = TestApp::spawn_with(|c| {
        c.on_demand.timeout_s = 1.0;
        c.on_demand.max_bytes = 1024 * 1024;
        // No images at the position: outside the survey.
        c.on_demand.sm.lookup_url = s.url("/siap-empty?POS={ra},{dec}");
        // A 5 MB streamed body, a timeout, an HTML page.
        c.on_demand.hst.template = s.url("/big-stream?ra={ra}&dec={dec}");
        c.on_demand.chandra.template = s.url("/slow?ra={ra}&dec={dec}");
        c.on_demand.jwst.template = s.url("/html?ra={ra}&dec={dec}");
    })
    .await;
    app.add_obj("ZTF2").await;
    for (ttype, placeholder) in [
        ("sm", OUTSIDE_SURVEY),
        ("hst", CURRENTLY_UNAVAILABLE),
        ("chandra", CURRENTLY_UNAVAILABLE),
        ("jwst", CURRENTLY_UNAVAILABLE),
    ] {
        let (status, body) = make(&app, "ZTF2", ttype, Some(UPLOADER)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ttype}: {body}");
        assert_eq!(body["data"]["public_url"], placeholder, "{ttype}");
        assert_eq!(body["data"]["type"], ttype);
    }
    // The service is still up.
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn refuses_what_is_not_an_on_demand_request() {
    let s = ImageServer::start().await;
    let app = TestApp::spawn_with(|c| {
        c.on_demand.hst.template = s.url("/grey.png?ra={ra}&dec={dec}");
    })
    .await;
    app.add_obj("ZTF3").await;
    let (status, _) = make(&app, "ZTF3", "hst", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for token in [READER, MANAGER] {
        let (status, _) = make(&app, "ZTF3", "hst", Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body) = make(&app, "ZTF3", "ls", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("not made on request"), "{body}");
    let (status, body) = make(&app, "ZTF3", "bogus", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("Invalid ttype"), "{body}");
    let (status, body) = make(&app, "nobody", "hst", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "Thumbnail failed to post: Invalid obj_id: nobody"
    );
    // An uploaded hst thumbnail is not overwritten.
    let (status, _) = app
        .upload_png("ZTF3", "hst", &crate::sidecar::app::png(32, 32, false))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = make(&app, "ZTF3", "hst", Some(UPLOADER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("uploaded"), "{body}");
    assert_eq!(
        s.total_hits(),
        0,
        "a refused request makes no outbound call"
    );
    // Listed in the OpenAPI document.
    let (_, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    assert!(doc["paths"]["/api/objs/{obj_id}/thumbnails/{type}"]["post"].is_object());
    app.stop().await;
}
