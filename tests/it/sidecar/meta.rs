//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database};

use super::app::*;
use crate::helpers::{TestBus, TestDb, PG_ADMIN};

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = TestApp::spawn().await;
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    app.add_obj("ZTF11").await;
    let (status, _) = app.upload_png("ZTF11", "new", &png(32, 32, false)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.upload_png("ZTF11", "new", b"junk").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.upload(None, &serde_json::json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.events(1).await;

    let (status, headers, bytes) = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let text = String::from_utf8(bytes).expect("utf8");
    for needle in [
        "thumbnails_uploads_total{result=\"success\"}",
        "thumbnails_uploads_total{result=\"invalid\"}",
        "thumbnails_uploads_total{result=\"unauthorized\"}",
        "thumbnails_upload_bytes_stored_total",
        "thumbnails_events_published_total{routing_key=\"thumbnail.stored\"}",
        "thumbnails_http_request_duration_seconds_bucket{",
        "route=\"/api/thumbnail\"",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }

    let (status, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/thumbnail", &["post"][..]),
        ("/api/thumbnail/{id}", &["get", "put", "delete"][..]),
        ("/api/objs/{obj_id}/thumbnails", &["get"][..]),
        ("/api/objs/{obj_id}/cutouts", &["post"][..]),
        ("/static/thumbnails/{path}", &["get"][..]),
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"][..]),
        ("/metrics", &["get"][..]),
        ("/openapi.json", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{path} {m} undocumented");
        }
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
    assert!(doc["components"]["schemas"]["UploadBody"].is_object());
    let cutouts = &doc["components"]["schemas"]["CutoutsRequest"]["properties"];
    for field in [
        "survey",
        "cutoutScience",
        "cutoutTemplate",
        "cutoutDifference",
    ] {
        assert!(
            cutouts[field].is_object(),
            "CutoutsRequest.{field} undocumented: {cutouts}"
        );
    }

    // Unknown routes are JSON 404s.
    let (status, body) = app.json(Method::GET, "/nope", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("error"))
    );
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    let (status, _) = app.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let admin = Database::connect(PG_ADMIN).await.expect("admin");
    admin
        .execute_unprepared(&format!("DROP DATABASE {} WITH (FORCE)", app.db.name))
        .await
        .expect("drop database");
    let (status, body) = app.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(message(&body).contains("database"), "{body}");
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn start_up_errors_name_the_problem() {
    let start = |config: thumbnails::config::Config, db: sea_orm::DatabaseConnection| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stop = tokio_util::sync::CancellationToken::new();
        let r = thumbnails::sidecar::serve(listener, &config, db, stop, Default::default()).await;
        format!("{:#}", r.expect_err("must not start"))
    };
    let bus = TestBus::new().await;
    // No schema: says to migrate.
    let empty = TestDb::empty().await;
    let e = start(bus.config(&empty, ""), empty.db.clone()).await;
    assert!(e.contains("thumbnails migrate"), "{e}");
    // Unreachable broker: names the address.
    let db = TestDb::new().await;
    let mut config = bus.config(&db, "");
    config.amqp.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let e = start(config, db.db.clone()).await;
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(!e.contains("guest:guest"), "no password in errors: {e}");
    bus.delete().await;
}
