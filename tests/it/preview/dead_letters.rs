//! The list page reads dead letters without taking them, and not on every
//! view: a quorum queue counts each return as a delivery (RabbitMQ 4 drops
//! a message after 20 by default), so the reasons are read at most once
//! per interval and the messages stay, delivered once.

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use reqwest::{Method, StatusCode};

use crate::sidecar::app::TestApp;

async fn dead_letter(app: &TestApp, queue: &str, reason: &str) {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-thumbnails-error".into(),
        AMQPValue::LongString(reason.into()),
    );
    app.bus
        .channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

#[tokio::test]
async fn reasons_are_shown_escaped_and_read_at_most_once_per_interval() {
    let app = TestApp::spawn_with(|c| c.http.preview_open = true).await;
    let dead = app.bus.topology.dead_queue();
    let reasons: Vec<String> = (0..7).map(|i| format!("reason <{i}>")).collect();
    for r in &reasons {
        dead_letter(&app, &dead, r).await;
    }
    for _ in 0..3 {
        let (status, _, body) = app.send(Method::GET, "/preview", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("7 messages"), "{body}");
        // The newest five of the seven, escaped.
        assert!(!body.contains("reason &#60;1&#62;"), "{body}");
        for i in 2..7 {
            assert!(body.contains(&format!("reason &#60;{i}&#62;")), "{body}");
        }
    }
    // All seven still queued, in order, each returned once (three views).
    let mut seen = Vec::new();
    while let Some(msg) = app
        .bus
        .channel
        .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic_get")
    {
        let headers = msg
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let count = match headers.inner().get("x-delivery-count") {
            Some(AMQPValue::LongLongInt(n)) => *n,
            Some(AMQPValue::LongInt(n)) => i64::from(*n),
            Some(AMQPValue::LongUInt(n)) => i64::from(*n),
            _ => 0,
        };
        assert!(count <= 1, "a dead letter was returned {count} times");
        match headers.inner().get("x-thumbnails-error") {
            Some(AMQPValue::LongString(s)) => seen.push(s.to_string()),
            other => panic!("no reason: {other:?}"),
        }
    }
    assert_eq!(seen, reasons);
    app.stop().await;
}
