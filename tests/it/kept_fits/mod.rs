//! `cutouts.keep_fits`: each alert stamp's original cutout, gzipped, beside
//! its PNG; through AMQP (the worker) and HTTP (the sidecar), on the real
//! ZTF fixtures, against the real PostgreSQL and RabbitMQ.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use thumbnails::store::cutouts::{Stamp, StampJob};
use thumbnails::surveys::ThumbnailType;

use crate::cutouts::{b64, cutouts_json, fixture, publish_alert, OTHER_ALERT};
use crate::helpers::*;
use crate::sidecar::app::files_under;

mod commit;
mod http;

const WAIT: Duration = Duration::from_secs(60);

/// One LSST alert's `new` stamp for `obj_id` (created at a fixed place),
/// with its cutout to keep if given.
pub fn lsst_job(obj_id: &str, png: &[u8], fits: Option<&[u8]>) -> StampJob {
    StampJob {
        obj_id: obj_id.into(),
        survey: "LSST".into(),
        position: Some((10.0, 20.0)),
        is_roid: false,
        stamps: vec![Stamp {
            ttype: ThumbnailType::New,
            png: Arc::new(png.to_vec()),
            is_grayscale: false,
            fits: fits.map(|f| Arc::new(f.to_vec())),
        }],
    }
}

pub fn gz(kind: &str) -> Vec<u8> {
    fixture(&format!("{OTHER_ALERT}_{kind}.fits.gz"))
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

pub fn fits_of(png: &str) -> String {
    png.strip_suffix(".png").expect("a PNG").to_string() + ".fits.gz"
}

/// `type -> (id, file_uri, public_url)` of an object's rows.
pub async fn rows(db: &TestDb, obj_id: &str) -> Vec<(String, i32, String, String)> {
    db.db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT type::text, id, file_uri, public_url FROM thumbnails
             WHERE obj_id = $1 ORDER BY type::text",
            [obj_id.into()],
        ))
        .await
        .expect("select")
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).expect("type"),
                r.try_get_by_index(1).expect("id"),
                r.try_get_by_index(2).expect("file_uri"),
                r.try_get_by_index(3).expect("public_url"),
            )
        })
        .collect()
}

/// The next `thumbnail.stored` body on `queue`, polled with a deadline.
async fn next_event(bus: &TestBus, queue: &str) -> Value {
    let got = eventually("a thumbnail.stored event", WAIT, || async {
        let mut got = bus.drain(queue).await;
        (!got.is_empty()).then(|| got.remove(0))
    })
    .await;
    serde_json::from_slice(&got.0).expect("json")
}

pub fn fits_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".fits.gz"))
        .collect()
}

#[tokio::test]
async fn kept_fits_sit_beside_the_stamps_are_replaced_in_place_and_cleared_when_off() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let mut config = bus.config(&db, "");
    config.storage.root = storage.path().to_path_buf();
    config.cutouts.keep_fits = true;
    let listener = bus.listen_stored().await;
    let worker = RunningWorker::start(&config).await;

    // Science as plain FITS (kept gzipped here), the others gzipped as ZTF
    // sends them (kept as they are).
    let plain = gunzip(&gz("cutoutScience"));
    let mut msg = cutouts_json("ZTF-keep");
    msg["cutoutScience"] = json!(b64(&plain));
    publish_alert(&bus, msg.to_string().as_bytes(), Some("application/json")).await;
    let event = next_event(&bus, &listener).await;
    let first = rows(&db, "ZTF-keep").await;
    assert_eq!(first.len(), 3);
    let originals = [
        ("new", plain.clone()),
        ("ref", gunzip(&gz("cutoutTemplate"))),
        ("sub", gunzip(&gz("cutoutDifference"))),
    ];
    for ((ttype, id, file_uri, public_url), (kind, original)) in first.iter().zip(&originals) {
        assert_eq!(ttype, kind);
        let kept = std::fs::read(fits_of(file_uri)).expect("the FITS beside the PNG");
        assert_eq!(&kept[..2], b"\x1f\x8b", "{ttype}: gzipped");
        assert_eq!(&gunzip(&kept), original, "{ttype}: the original bytes");
        let element = event["thumbnails"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["id"] == *id))
            .expect("the row in thumbnail.stored");
        assert_eq!(element["fits_url"], fits_of(public_url), "{event}");
        let mut keys: Vec<&str> = element
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "file_uri",
                "fits_url",
                "id",
                "origin",
                "public_url",
                "survey",
                "type"
            ]
        );
    }
    // ZTF's gzipped cutouts are kept byte for byte.
    assert_eq!(
        std::fs::read(fits_of(&first[1].2)).expect("ref"),
        gz("cutoutTemplate")
    );
    assert_eq!(files_under(storage.path()).len(), 6);

    // Sent again with other cutouts: replaced in place, same rows and paths.
    let mut again = cutouts_json("ZTF-keep");
    again["cutoutScience"] = json!(b64(&gz("cutoutDifference")));
    publish_alert(&bus, again.to_string().as_bytes(), Some("application/json")).await;
    next_event(&bus, &listener).await;
    assert_eq!(rows(&db, "ZTF-keep").await, first);
    assert_eq!(
        std::fs::read(fits_of(&first[0].2)).expect("new"),
        gz("cutoutDifference")
    );
    assert_eq!(files_under(storage.path()).len(), 6);
    worker.stop().await;

    // keep_fits off: no FITS for a new object, and the stale ones of a
    // rewritten stamp go (they would no longer match the PNGs).
    config.cutouts.keep_fits = false;
    let worker = RunningWorker::start(&config).await;
    for obj_id in ["ZTF-nokeep", "ZTF-keep"] {
        publish_alert(
            &bus,
            cutouts_json(obj_id).to_string().as_bytes(),
            Some("application/json"),
        )
        .await;
        let event = next_event(&bus, &listener).await;
        assert_eq!(event["obj_id"], obj_id);
        for t in event["thumbnails"].as_array().expect("rows") {
            assert!(t.get("fits_url").is_none(), "{event}");
        }
    }
    worker.stop().await;
    assert_eq!(fits_files(storage.path()), Vec::<PathBuf>::new());
    assert_eq!(rows(&db, "ZTF-keep").await, first);
    assert_eq!(files_under(storage.path()).len(), 6, "six PNGs");
    bus.delete().await;
}
