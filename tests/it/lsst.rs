//! Rubin/LSST alerts against the real services, on the real fixtures of
//! `tests/fixtures/lsst-alerts`: Confluent-framed packets (schemas v9, v10,
//! v11) and Fink's container file of two alerts, through RabbitMQ and the
//! CLI; a schema registry stand-in for an id the service does not ship;
//! and each kind of bad packet with its dead-letter reason.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use serde_json::Value;

use crate::cutouts::{publish_alert as publish, stamps};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(60);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lsst-alerts");

/// The three packets: (file, object, is_roid, diaSourceId).
pub const PACKETS: [(&str, &str, bool, &str); 3] = [
    (
        "7912941781254298.v9_0.avro",
        "7912941781254298",
        false,
        "7912941781254298",
    ),
    (
        "170094456272322680.v10_0.avro",
        "170028485706776685",
        false,
        "170094456272322680",
    ),
    (
        "170094456480989258.v11_0.avro",
        "21163624394469969",
        true,
        "170094456480989258",
    ),
];
pub const FINK: &str = "fink-2-alerts.avro";

pub fn lsst_fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

/// Fink's file written anew after `edit` of each record (None drops it).
pub fn fink_rewritten(edit: impl Fn(usize, Avro) -> Option<Avro>) -> Vec<u8> {
    let bytes = lsst_fixture(FINK);
    let reader = apache_avro::Reader::new(&bytes[..]).expect("reads");
    let schema = reader.writer_schema().clone();
    let records: Vec<Avro> = reader.map(|r| r.expect("record")).collect();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).expect("writer");
    for (i, r) in records.into_iter().enumerate() {
        if let Some(r) = edit(i, r) {
            writer.append_value(r).expect("append");
        }
    }
    writer.into_inner().expect("written")
}

/// Sets fields of a Fink record to null (Fink's unions put null second);
/// `a.b` names field `b` of the record in field `a`.
pub fn nulled(record: Avro, names: &[&str]) -> Avro {
    let Avro::Record(fields) = record else {
        return record;
    };
    let inner = |n: &str| -> Vec<&str> {
        names
            .iter()
            .filter_map(|p| p.strip_prefix(n)?.strip_prefix('.'))
            .collect()
    };
    Avro::Record(
        fields
            .into_iter()
            .map(|(n, v)| match v {
                Avro::Union(_, _) if names.contains(&n.as_str()) => {
                    (n, Avro::Union(1, Box::new(Avro::Null)))
                }
                v @ Avro::Record(_) if !inner(&n).is_empty() => {
                    let v = nulled(v, &inner(&n));
                    (n, v)
                }
                v => (n, v),
            })
            .collect(),
    )
}

#[tokio::test]
async fn rubin_packets_and_finks_file_on_the_queue_become_lsst_stamps() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let mut config = bus.config(&db, "");
    config.storage.root = storage.path().to_path_buf();
    let listener = bus.listen_stored().await;
    let worker = RunningWorker::start(&config).await;

    // The three packets, with no content type and with avro/binary.
    for (i, (file, ..)) in PACKETS.iter().enumerate() {
        let ct = (i == 1).then_some("avro/binary");
        publish(&bus, &lsst_fixture(file), ct).await;
    }
    eventually("the packets' stamps", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails").await == 9).then_some(())
    })
    .await;
    let events: Vec<Value> = bus
        .drain(&listener)
        .await
        .iter()
        .map(|(b, _)| serde_json::from_slice(b).expect("json"))
        .collect();
    assert_eq!(
        events.len(),
        3,
        "one thumbnail.stored per object: {events:?}"
    );
    for (_, obj_id, is_roid, _) in PACKETS {
        let rows = stamps(&db, obj_id).await;
        assert_eq!(
            rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ["new", "ref", "sub"],
            "{obj_id}"
        );
        for (ttype, survey, file_uri, _) in &rows {
            assert_eq!(survey.as_deref(), Some("LSST"));
            assert!(
                file_uri.ends_with(&format!("/{obj_id}_{ttype}_LSST.png")),
                "{file_uri}"
            );
            let img =
                image::load_from_memory(&std::fs::read(file_uri).expect("file")).expect("a PNG");
            assert_eq!((img.width(), img.height()), (168, 168));
        }
        let roid = db
            .scalar_i64(&format!(
                "SELECT count(*) FROM objs WHERE id = '{obj_id}' AND is_roid = {is_roid}"
            ))
            .await;
        assert_eq!(roid, 1, "{obj_id}: created, is_roid {is_roid}");
        let event = events
            .iter()
            .find(|e| e["obj_id"] == obj_id)
            .expect("the object's event");
        assert_eq!(event["thumbnails"].as_array().map(Vec::len), Some(3));
    }
    // The position is the diaSource's.
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM objs WHERE id = '7912941781254298'
               AND abs(ra - 55.75212760972686) < 1e-9 AND abs(dec + 32.26847858422095) < 1e-9"
        )
        .await,
        1
    );

    // Fink's file: both alerts, replaced in place (same rows).
    let before = db.scalar_i64("SELECT sum(id) FROM thumbnails").await;
    publish(&bus, &lsst_fixture(FINK), None).await;
    eventually("the file's two events", WAIT, || async {
        (bus.queue_len(&listener).await == 2).then_some(())
    })
    .await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 9);
    assert_eq!(
        db.scalar_i64("SELECT sum(id) FROM thumbnails").await,
        before
    );
    bus.drain(&listener).await;

    // A file with one unreadable record and one good: the good one stored.
    let half = fink_rewritten(|i, r| {
        Some(if i == 0 {
            nulled(r, &["diaSource.ra"])
        } else {
            r
        })
    });
    publish(&bus, &half, None).await;
    eventually("the good record's event", WAIT, || async {
        (bus.queue_len(&listener).await == 1).then_some(())
    })
    .await;

    // Bad packets, each dead-lettered with its reason; nothing written.
    let packet = lsst_fixture(PACKETS[0].0);
    let mut magic = packet.clone();
    magic[0] = 1;
    let mut unknown = packet.clone();
    unknown[1..5].copy_from_slice(&1203u32.to_be_bytes());
    let empty = fink_rewritten(|_, _| None);
    let no_cutouts = fink_rewritten(|i, r| {
        (i == 0).then(|| nulled(r, &["cutoutScience", "cutoutTemplate", "cutoutDifference"]))
    });
    let bad: [(&[u8], &str); 5] = [
        (&packet[..packet.len() / 2], "avro"),
        (&magic, "magic"),
        (&unknown, "unknown_schema: schema id 1203"),
        (&empty, "no_alerts"),
        (&no_cutouts, "no_cutouts"),
    ];
    for (body, _) in &bad {
        publish(&bus, body, None).await;
    }
    eventually("five dead letters", WAIT, || async {
        (bus.queue_len(&bus.cutouts.dead_queue()).await == 5).then_some(())
    })
    .await;
    worker.stop().await;
    let reasons = bus.dead_reasons(&bus.cutouts.dead_queue()).await;
    for (_, reason) in bad {
        assert!(
            reasons.iter().any(|r| r.starts_with(reason)),
            "{reason}: {reasons:?}"
        );
    }
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 9);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM objs").await, 3);
    bus.delete().await;
}

/// A Rubin-shaped schema the service does not ship, and a packet of it.
const TINY_SCHEMA: &str = r#"{"type": "record", "name": "alert", "namespace": "test.v12_3", "fields": [
  {"name": "diaSourceId", "type": "long"},
  {"name": "diaSource", "type": {"type": "record", "name": "diaSource", "fields": [
     {"name": "diaSourceId", "type": "long"}, {"name": "ra", "type": "double"}, {"name": "dec", "type": "double"}]}},
  {"name": "diaObject", "type": ["null", {"type": "record", "name": "diaObject", "fields": [
     {"name": "diaObjectId", "type": "long"}]}]},
  {"name": "cutoutScience", "type": ["null", "bytes"]},
  {"name": "cutoutTemplate", "type": ["null", "bytes"]},
  {"name": "cutoutDifference", "type": ["null", "bytes"]}]}"#;

pub fn tiny_packet(id: u32, obj: i64) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(TINY_SCHEMA).expect("schema");
    let science = lsst_fixture(&format!("{}_cutoutScience.fits", PACKETS[0].3));
    let record = Avro::Record(vec![
        ("diaSourceId".into(), Avro::Long(obj)),
        (
            "diaSource".into(),
            Avro::Record(vec![
                ("diaSourceId".into(), Avro::Long(obj)),
                ("ra".into(), Avro::Double(10.5)),
                ("dec".into(), Avro::Double(-20.25)),
            ]),
        ),
        (
            "diaObject".into(),
            Avro::Union(
                1,
                Box::new(Avro::Record(vec![("diaObjectId".into(), Avro::Long(obj))])),
            ),
        ),
        (
            "cutoutScience".into(),
            Avro::Union(1, Box::new(Avro::Bytes(science))),
        ),
        (
            "cutoutTemplate".into(),
            Avro::Union(0, Box::new(Avro::Null)),
        ),
        (
            "cutoutDifference".into(),
            Avro::Union(0, Box::new(Avro::Null)),
        ),
    ]);
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_value_to_vec(record)
        .expect("encodes");
    let mut packet = vec![0u8];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&datum);
    packet
}

/// A schema registry stand-in: 503 until `ready`, then the tiny schema for
/// id 1203 and 404 for others; counts the requests.
pub struct Registry {
    pub url: String,
    pub ready: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
}

impl Registry {
    pub async fn start() -> Self {
        use axum::extract::{Path as P, State};
        use axum::http::StatusCode;
        let ready = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let state = (ready.clone(), hits.clone());
        let app = axum::Router::new()
            .route(
                "/schemas/ids/{id}",
                axum::routing::get(
                    |State((ready, hits)): State<(Arc<AtomicBool>, Arc<AtomicUsize>)>,
                     P(id): P<u32>| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        if !ready.load(Ordering::SeqCst) {
                            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        if id != 1203 {
                            return (StatusCode::NOT_FOUND, r#"{"error_code": 40403}"#.into());
                        }
                        let body = serde_json::json!({ "schema": TINY_SCHEMA });
                        (StatusCode::OK, body.to_string())
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, ready, hits }
    }
}

#[tokio::test]
async fn an_unshipped_schema_id_is_fetched_once_and_held_while_the_registry_is_down() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let registry = Registry::start().await;
    let mut config = bus.config(&db, "");
    config.storage.root = storage.path().to_path_buf();
    config.cutouts.schema_registry_url = registry.url.clone();
    let worker = RunningWorker::start(&config).await;

    publish(&bus, &tiny_packet(1203, 42), None).await;
    // The registry does not answer: asked again and again, nothing dead-lettered.
    eventually("two asks of the registry", WAIT, || async {
        (registry.hits.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert_eq!(bus.queue_len(&bus.cutouts.dead_queue()).await, 0);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM thumbnails").await, 0);
    registry.ready.store(true, Ordering::SeqCst);
    eventually("the held alert's stamp", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails WHERE obj_id = '42'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let asked = registry.hits.load(Ordering::SeqCst);
    // A second packet of the same id: no new request.
    publish(&bus, &tiny_packet(1203, 43), None).await;
    eventually("the second alert's stamp", WAIT, || async {
        (db.scalar_i64("SELECT count(*) FROM thumbnails WHERE obj_id = '43'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(registry.hits.load(Ordering::SeqCst), asked, "fetched once");
    // An id the registry does not have: dead-lettered as unknown.
    publish(&bus, &tiny_packet(1204, 44), None).await;
    eventually("a dead letter", WAIT, || async {
        (bus.queue_len(&bus.cutouts.dead_queue()).await == 1).then_some(())
    })
    .await;
    worker.stop().await;
    let reasons = bus.dead_reasons(&bus.cutouts.dead_queue()).await;
    assert!(reasons[0].starts_with("unknown_schema"), "{reasons:?}");
    bus.delete().await;
}

#[tokio::test]
async fn cutouts_draw_reads_rubin_packets_and_container_files_without_a_config_file() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let work_dir = tempfile::tempdir().expect("tempdir"); // no config.yaml here
    let bad = out_dir.path().join("bad.avro");
    let mut magic = lsst_fixture(PACKETS[0].0);
    magic[0] = 1;
    std::fs::write(&bad, &magic).expect("write");
    let run = |files: Vec<std::path::PathBuf>| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_thumbnails"));
        c.stdin(Stdio::null())
            .kill_on_drop(true)
            .current_dir(work_dir.path())
            .env("RUST_LOG", "off")
            .args(["cutouts", "draw", "--out"])
            .arg(out_dir.path())
            .args(files);
        c
    };
    let mut files: Vec<_> = PACKETS
        .iter()
        .map(|p| Path::new(FIXTURES).join(p.0))
        .collect();
    files.push(Path::new(FIXTURES).join(FINK));
    let out = run(files.clone()).output().await.expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("15 PNGs written, 0 failed"), "{stdout}");
    for (_, obj_id, ..) in PACKETS {
        for ttype in ["new", "ref", "sub"] {
            let png = out_dir.path().join(format!("{obj_id}_{ttype}_LSST.png"));
            let img =
                image::load_from_memory(&std::fs::read(&png).expect("written")).expect("a PNG");
            assert_eq!((img.width(), img.height()), (168, 168));
        }
    }
    files.push(bad);
    let out = run(files).output().await.expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.avro: magic: "), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("15 PNGs written, 1 failed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
