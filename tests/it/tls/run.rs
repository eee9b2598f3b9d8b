//! `thumbnails run` over TLS to both servers, end to end.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use thumbnails::bus::{PublisherConnection, ROUTING_OBJ_CREATED};

use super::*;
use crate::helpers::{event, eventually, free_port, sigterm, wait_healthy};

#[tokio::test]
async fn run_with_verify_full_and_client_certificates_consumes_draws_and_uploads() {
    let names = Names::new();
    let amqp = amqp_config(&names);
    let port = free_port();
    let storage = tempfile::tempdir().expect("tempdir");
    // The API token comes from a secrets file, too.
    let token = "tls-test-token-1";
    let tokens = storage.path().join("tokens.json");
    std::fs::write(
        &tokens,
        format!(r#"[{{"token": "{token}", "scopes": ["upload", "manage"]}}]"#),
    )
    .expect("tokens file");
    let mut run = thumbnails(&["run"]);
    run.env(
        "THUMBNAILS_DATABASE__URL",
        pg_url("thumbnails", PG, &names.db, true),
    )
    .env("THUMBNAILS_HTTP__LISTEN", format!("127.0.0.1:{port}"))
    .env("THUMBNAILS_HTTP__TOKENS_FILE", &tokens)
    .env("THUMBNAILS_STORAGE__ROOT", storage.path());
    with_amqp(&mut run, &amqp);
    let mut child = run.spawn().expect("spawn");
    wait_healthy(port).await;

    // obj.created through the TLS broker -> rows in the TLS database.
    let publisher = PublisherConnection::open_config(&amqp, "it-tls publisher", &names.topology)
        .await
        .expect("publisher over TLS");
    publisher
        .publisher()
        .publish_json(ROUTING_OBJ_CREATED, &event("ZTF-tls-1", 120.5, 33.25), true)
        .await
        .expect("publish");
    let db = thumbnails::store::connect(&pg_url("thumbnails", PG, &names.db, true), 2)
        .await
        .expect("database over TLS");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    sql,
                ))
                .await
                .ok()??;
            row.try_get_by_index::<i64>(0).ok()
        }
    };
    eventually(
        "survey rows written over TLS",
        Duration::from_secs(60),
        || async {
            (count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1'").await? == 3)
                .then_some(())
        },
    )
    .await;

    // An alert's cutouts, drawn; then an upload.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let alert = "ZTF18aagtxuc_396522680015040001";
    let cutouts = serde_json::json!({
        "survey": "ZTF",
        "cutoutScience": fixture(&format!("{alert}_cutoutScience.fits.gz")),
        "cutoutTemplate": fixture(&format!("{alert}_cutoutTemplate.fits.gz")),
        "cutoutDifference": fixture(&format!("{alert}_cutoutDifference.fits.gz")),
    });
    let reply = http
        .post(format!("{base}/api/objs/ZTF-tls-1/cutouts"))
        .header("Authorization", format!("token {token}"))
        .header("Content-Type", "application/json")
        .body(cutouts.to_string())
        .send()
        .await
        .expect("POST cutouts");
    assert!(reply.status().is_success(), "{:?}", reply.text().await);
    let upload = serde_json::json!({
        "obj_id": "ZTF-tls-1",
        "ttype": "new",
        "data": fixture(&format!("{alert}_cutoutScience.reference.png")),
    });
    let reply = http
        .post(format!("{base}/api/thumbnail"))
        .header("Authorization", format!("token {token}"))
        .header("Content-Type", "application/json")
        .body(upload.to_string())
        .send()
        .await
        .expect("POST thumbnail");
    assert!(reply.status().is_success(), "{:?}", reply.text().await);
    assert_eq!(
        count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1' AND survey = 'ZTF'")
            .await,
        Some(3),
        "new, ref and sub drawn from the alert"
    );
    assert_eq!(
        count("SELECT count(*) FROM thumbnails WHERE obj_id = 'ZTF-tls-1' AND origin = 'upload' AND survey IS NULL").await,
        Some(1),
        "the upload"
    );

    let status = sigterm(&mut child).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    publisher.close("done").await;
    let _ = db.close().await;
    names.clean_up().await;
}
