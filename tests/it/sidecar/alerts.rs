//! `POST /api/alerts`: Rubin packets and container files as the raw body,
//! on the real fixtures; objects created, one answer per alert.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::app::*;
use crate::lsst::{fink_rewritten, lsst_fixture, nulled, FINK, PACKETS};

async fn post(app: &TestApp, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let (status, _, bytes) = app
        .send(Method::POST, "/api/alerts", token, Some(body))
        .await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn rubin_packets_and_finks_file_are_drawn_per_alert() {
    let app = TestApp::spawn().await;
    for (file, obj_id, is_roid, _) in PACKETS {
        let (status, reply) = post(&app, Some(UPLOADER), lsst_fixture(file)).await;
        assert_eq!(status, StatusCode::OK, "{file}: {reply}");
        let data = reply["data"].as_array().expect("a list");
        assert_eq!(data.len(), 1, "{reply}");
        assert_eq!(data[0]["obj_id"], obj_id);
        assert_eq!(data[0]["survey"], "LSST");
        for k in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
            assert!(data[0]["cutouts"][k]["id"].is_i64(), "{k}: {reply}");
        }
        let roid = app
            .db
            .scalar_i64(&format!(
                "SELECT count(*) FROM objs WHERE id = '{obj_id}' AND is_roid = {is_roid}"
            ))
            .await;
        assert_eq!(roid, 1, "{obj_id} created");
    }
    assert_eq!(app.count("thumbnails").await, 9);
    assert_eq!(app.files().len(), 9);
    let events = app.events(9).await;
    assert!(events
        .iter()
        .all(|e| e["thumbnails"][0]["survey"] == "LSST"));

    // Fink's file: two alerts, the same objects' stamps replaced in place.
    let before = app.db.scalar_i64("SELECT sum(id) FROM thumbnails").await;
    let (status, reply) = post(&app, Some(UPLOADER), lsst_fixture(FINK)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let objs: Vec<&str> = reply["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["obj_id"].as_str())
        .collect();
    assert_eq!(objs, [PACKETS[1].1, PACKETS[2].1]);
    assert_eq!(app.count("thumbnails").await, 9);
    assert_eq!(
        app.db.scalar_i64("SELECT sum(id) FROM thumbnails").await,
        before
    );

    // One bad record of two: the other answered and stored.
    let half = fink_rewritten(|i, r| {
        Some(if i == 1 {
            nulled(r, &["diaSource.ra"])
        } else {
            r
        })
    });
    let (status, reply) = post(&app, Some(UPLOADER), half).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let data = reply["data"].as_array().expect("a list");
    assert_eq!(data.len(), 2, "{reply}");
    assert!(
        data.iter().any(|a| a["error"]
            .as_str()
            .is_some_and(|e| e.contains("diaSource.ra"))),
        "{reply}"
    );

    // Bad bodies: 400 with the reason, nothing written.
    let rows = app.count("thumbnails").await;
    let packet = lsst_fixture(PACKETS[0].0);
    let mut unknown = packet.clone();
    unknown[1..5].copy_from_slice(&1203u32.to_be_bytes());
    let mut magic = packet.clone();
    magic[0] = 1;
    for (body, reason) in [
        (packet[..packet.len() / 2].to_vec(), "avro"),
        (magic, "magic"),
        (unknown, "unknown_schema: schema id 1203"),
        (fink_rewritten(|_, _| None), "no_alerts"),
        (br#"{"obj_id": "x"}"#.to_vec(), "magic"),
    ] {
        let (status, reply) = post(&app, Some(UPLOADER), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("Alerts failed to post: {reason}"))),
            "{reason}: {reply}"
        );
    }
    assert_eq!(app.count("thumbnails").await, rows);
    assert_eq!(app.count("objs").await, 3);

    // The upload scope is needed.
    let (status, _) = post(&app, None, lsst_fixture(PACKETS[0].0)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&app, Some(READER), lsst_fixture(PACKETS[0].0)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}
