//! Alert cutouts through RabbitMQ against the real services, on the real
//! ZTF fixtures: Avro packets and JSON messages become new/ref/sub stamps.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use serde_json::{json, Value};
use thumbnails::bus::ROUTING_ALERT_CUTOUTS;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ztf-alerts");
pub const AVRO_ALERT: &str = "ZTF18aaxjdyr_1661382530015060001.avro";
pub const OTHER_ALERT: &str = "ZTF18aagtxuc_396522680015040001";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The JSON form of the other fixture alert's three cutouts.
pub fn cutouts_json(obj_id: &str) -> Value {
    let c = |k: &str| b64(&fixture(&format!("{OTHER_ALERT}_{k}.fits.gz")));
    json!({
        "obj_id": obj_id, "survey": "ZTF", "ra": 120.5, "dec": 33.25,
        "cutoutScience": c("cutoutScience"),
        "cutoutTemplate": c("cutoutTemplate"),
        "cutoutDifference": c("cutoutDifference"),
    })
}

/// Publishes an `alert.cutouts` message, with a content type if given.
pub async fn publish_alert(bus: &TestBus, body: &[u8], content_type: Option<&str>) {
    let mut properties = BasicProperties::default();
    if let Some(ct) = content_type {
        properties = properties.with_content_type(ct.into());
    }
    bus.channel
        .basic_publish(
            bus.topology.exchange.as_str().into(),
            ROUTING_ALERT_CUTOUTS.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// `(type, survey, file_uri, public_url)` of an object's rows, by type.
pub async fn stamps(db: &TestDb, obj_id: &str) -> Vec<(String, Option<String>, String, String)> {
    let rows = db
        .db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT type::text, survey, file_uri, public_url FROM thumbnails WHERE obj_id = $1 ORDER BY type::text",
            [obj_id.into()],
        ))
        .await
        .expect("select");
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index(0).expect("type"),
                r.try_get_by_index(1).expect("survey"),
                r.try_get_by_index(2).expect("file_uri"),
                r.try_get_by_index(3).expect("public_url"),
            )
        })
        .collect()
}

use sea_orm::ConnectionTrait;

#[tokio::test]
async fn alerts_on_the_queue_become_stamps_files_and_one_event_per_object() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let mut config = bus.config(&db, "");
    config.storage.root = storage.path().to_path_buf();
    let listener = bus.listen_stored().await;
    // With the feed on, objects the alerts create are announced like any
    // insert (so they get their archival thumbnails too).
    thumbnails::feed::set_enabled(db.db.get_postgres_connection_pool(), true)
        .await
        .expect("feed on");
    let worker = RunningWorker::start(&config).await;

    // A whole ZTF packet; the JSON form (object created from ra/dec); a
    // message with one bad cutout of three; one with nothing drawable; junk.
    publish_alert(&bus, &fixture(AVRO_ALERT), Some("avro/binary")).await;
    publish_alert(
        &bus,
        cutouts_json("ZTF-json").to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    let mut partly = cutouts_json("ZTF-partly");
    partly["cutoutTemplate"] = json!(b64(b"SIMPLE  = T, but nothing else"));
    publish_alert(
        &bus,
        partly.to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    let mut hopeless = cutouts_json("ZTF-hopeless");
    for k in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
        hopeless[k] = json!("not base64 at all!");
    }
    publish_alert(
        &bus,
        hopeless.to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    publish_alert(&bus, b"\x00\x01 junk", Some("avro/binary")).await;

    eventually("the stamps of three alerts", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 8).then_some(())
    })
    .await;
    eventually("two dead letters", WAIT, || async {
        (bus.queue_len(&bus.cutouts.dead_queue()).await == 2).then_some(())
    })
    .await;
    worker.stop().await;

    let rows = stamps(&db, "ZTF18aaxjdyr").await;
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["new", "ref", "sub"]
    );
    for (ttype, survey, file_uri, public_url) in &rows {
        assert_eq!(survey.as_deref(), Some("ZTF"));
        assert!(
            public_url.ends_with(&format!("/ZTF18aaxjdyr_{ttype}_ZTF.png")),
            "{public_url}"
        );
        let png = std::fs::read(file_uri).expect("the stamp's file");
        let img = image::load_from_memory(&png).expect("a PNG");
        assert_eq!((img.width(), img.height()), (168, 168));
    }
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM objs WHERE id IN ('ZTF18aaxjdyr', 'ZTF-json', 'ZTF-partly')"
        )
        .await,
        3,
        "objects created from the alerts' positions"
    );
    let partly: Vec<String> = stamps(&db, "ZTF-partly")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        partly,
        ["new", "sub"],
        "the good stamps of a partly bad alert"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM objs WHERE id = 'ZTF-hopeless'")
            .await,
        0
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(DISTINCT o) FROM thumbnails_feed_outbox, unnest(obj_ids) AS o
             WHERE o IN ('ZTF18aaxjdyr', 'ZTF-json', 'ZTF-partly')"
        )
        .await,
        3,
        "the feed announces the objects the alerts created"
    );

    // One thumbnail.stored per object, naming its stamps.
    let events: Vec<Value> = bus
        .drain(&listener)
        .await
        .iter()
        .map(|(b, _)| serde_json::from_slice(b).expect("json"))
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    let ztf = events
        .iter()
        .find(|e| e["obj_id"] == "ZTF18aaxjdyr")
        .expect("the packet's event");
    assert_eq!(ztf["thumbnails"].as_array().map(Vec::len), Some(3));

    let reasons = bus.dead_reasons(&bus.cutouts.dead_queue()).await;
    assert!(
        reasons.iter().any(|r| r.starts_with("none_drawn")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("unknown_schema")),
        "{reasons:?}"
    );

    // Sent again: replaced in place, same ids, no new rows.
    let before = db.scalar_i64("SELECT sum(id) FROM thumbnails").await;
    let worker = RunningWorker::start(&config).await;
    publish_alert(&bus, &fixture(AVRO_ALERT), Some("avro/binary")).await;
    eventually("the packet's event again", WAIT, || async {
        (bus.queue_len(&listener).await == 1).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 8);
    assert_eq!(
        db.scalar_i64("SELECT sum(id) FROM thumbnails").await,
        before
    );
    bus.delete().await;
}
