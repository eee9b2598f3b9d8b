//! The real packets of `tests/fixtures` (ZTF's container file, Rubin's
//! framed v9/v10/v11 packets, Fink's two-alert file), codecs, and the bad
//! inputs each with its reason.

use std::path::PathBuf;

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Schema, Writer};
use proptest::prelude::*;

use super::*;

fn read(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn one(bytes: &[u8]) -> Result<Alert, CutoutError> {
    let mut all = read_alerts(bytes, &Schemas::new(), "")?;
    assert_eq!(all.len(), 1);
    all.remove(0)
}

#[test]
fn the_ztf_packet_holds_the_three_stamps() {
    let alert = one(&read("ztf-alerts", "ZTF18aaxjdyr_1661382530015060001.avro")).expect("reads");
    assert_eq!(alert.obj_id, "ZTF18aaxjdyr");
    assert_eq!(alert.candid, Some(1661382530015060001));
    assert!((alert.ra - 296.8679389).abs() < 1e-6, "{}", alert.ra);
    assert!((alert.dec - 24.08881).abs() < 1e-5, "{}", alert.dec);
    assert_eq!((alert.survey, alert.is_roid), (ZTF, false));
    let kinds: Vec<Kind> = alert.cutouts.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, Kind::ALL);
    for (kind, bytes) in &alert.cutouts {
        let name = format!("ZTF18aaxjdyr_1661382530015060001_{}.fits.gz", kind.field());
        assert!(*bytes == read("ztf-alerts", &name), "{name}");
    }
}

/// (packet, schema id, obj_id, is_roid, diaSourceId, ra, dec) from the
/// fixtures' manifest.json.
const RUBIN: [(&str, u32, &str, bool, i64, f64, f64); 3] = [
    (
        "7912941781254298.v9_0.avro",
        900,
        "7912941781254298",
        false,
        7912941781254298,
        55.75212760972686,
        -32.26847858422095,
    ),
    (
        "170094456272322680.v10_0.avro",
        1000,
        "170028485706776685",
        false,
        170094456272322680,
        63.349628499442076,
        -47.18075801654059,
    ),
    (
        "170094456480989258.v11_0.avro",
        1100,
        "21163624394469969",
        true,
        170094456480989258,
        150.4555220874077,
        3.482150412358473,
    ),
];

#[test]
fn rubin_packets_are_read_with_the_schema_their_id_names() {
    for (file, id, obj_id, is_roid, source, ra, dec) in RUBIN {
        let bytes = read("lsst-alerts", file);
        assert_eq!(Framing::of(&bytes), Ok(Framing::Confluent(id)), "{file}");
        assert!(is_packet(&bytes));
        let alert = one(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(alert.obj_id, obj_id, "{file}");
        assert_eq!(alert.is_roid, is_roid, "{file}");
        assert_eq!(alert.candid, Some(source), "{file}");
        assert_eq!(alert.survey, LSST);
        assert!((alert.ra - ra).abs() < 1e-9, "{file}: ra {}", alert.ra);
        assert!((alert.dec - dec).abs() < 1e-9, "{file}: dec {}", alert.dec);
        assert_eq!(alert.cutouts.len(), 3, "{file}");
        for (kind, stamp) in &alert.cutouts {
            let name = format!("{source}_{}.fits", kind.field());
            assert!(*stamp == read("lsst-alerts", &name), "{file}: {name}");
        }
    }
}

#[test]
fn the_prefix_goes_before_lsst_ids_only() {
    let schemas = Schemas::new();
    let lsst = read_alerts(&read("lsst-alerts", RUBIN[0].0), &schemas, "LSST")
        .expect("reads")
        .remove(0)
        .expect("reads");
    assert_eq!(lsst.obj_id, "LSST7912941781254298");
    let ztf = read_alerts(
        &read("ztf-alerts", "ZTF18aaxjdyr_1661382530015060001.avro"),
        &schemas,
        "LSST",
    )
    .expect("reads")
    .remove(0)
    .expect("reads");
    assert_eq!(ztf.obj_id, "ZTF18aaxjdyr");
}

#[test]
fn finks_file_holds_two_alerts_the_second_a_solar_system_source() {
    let alerts = read_alerts(
        &read("lsst-alerts", "fink-2-alerts.avro"),
        &Schemas::new(),
        "",
    )
    .expect("reads");
    let alerts: Vec<Alert> = alerts.into_iter().map(|a| a.expect("alert")).collect();
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        (alerts[0].obj_id.as_str(), alerts[0].is_roid),
        ("170028485706776685", false)
    );
    assert_eq!(
        (alerts[1].obj_id.as_str(), alerts[1].is_roid),
        ("21163624394469969", true)
    );
    for (alert, (_, _, _, _, source, ra, _)) in alerts.iter().zip(&RUBIN[1..]) {
        assert!((alert.ra - ra).abs() < 1e-9);
        for (kind, stamp) in &alert.cutouts {
            let name = format!("{source}_{}.fits", kind.field());
            assert!(*stamp == read("lsst-alerts", &name), "{name}");
        }
    }
}

/// Fink's records written anew with `codec`, after `edit` (by index).
fn rewrite(codec: Codec, edit: impl Fn(usize, Value) -> Option<Value>) -> Vec<u8> {
    let bytes = read("lsst-alerts", "fink-2-alerts.avro");
    let reader = apache_avro::Reader::new(&bytes[..]).expect("reads");
    let schema: Schema = reader.writer_schema().clone();
    let records: Vec<Value> = reader.map(|r| r.expect("record")).collect();
    let mut writer = Writer::with_codec(&schema, Vec::new(), codec).expect("writer");
    for (i, record) in records.into_iter().enumerate() {
        if let Some(record) = edit(i, record) {
            writer.append_value(record).expect("appends");
        }
    }
    writer.into_inner().expect("writes")
}

#[test]
fn deflate_and_snappy_container_files_are_read() {
    for codec in [Codec::Deflate(DeflateSettings::default()), Codec::Snappy] {
        let alerts =
            read_alerts(&rewrite(codec, |_, r| Some(r)), &Schemas::new(), "").expect("reads");
        assert_eq!(alerts.len(), 2, "{codec:?}");
        assert!(alerts
            .iter()
            .all(|a| a.as_ref().is_ok_and(|a| a.cutouts.len() == 3)));
    }
}

/// Sets fields of a record (through their unions; Fink's put null second)
/// to null; `a.b` names field `b` of the record in field `a`.
fn null_field(record: Value, names: &[&str]) -> Value {
    let Value::Record(fields) = record else {
        return record;
    };
    let inner = |n: &str| -> Vec<&str> {
        names
            .iter()
            .filter_map(|p| p.strip_prefix(n)?.strip_prefix('.'))
            .collect()
    };
    Value::Record(
        fields
            .into_iter()
            .map(|(n, v)| {
                let v = match v {
                    Value::Union(_, _) if names.contains(&n.as_str()) => {
                        Value::Union(1, Box::new(Value::Null))
                    }
                    v @ Value::Record(_) if !inner(&n).is_empty() => null_field(v, &inner(&n)),
                    v => v,
                };
                (n, v)
            })
            .collect(),
    )
}

#[test]
fn a_bad_record_is_reported_and_the_others_read() {
    // Fink's unions are [type, "null"]: null is branch 1.
    let file = rewrite(Codec::Null, |i, r| {
        Some(if i == 0 {
            null_field(r, &["diaSource.ra"])
        } else {
            r
        })
    });
    let alerts = read_alerts(&file, &Schemas::new(), "").expect("reads");
    let first = alerts[0]
        .as_ref()
        .map(|a| &a.obj_id)
        .map_err(|e| e.to_string());
    assert_eq!(first, Err("the alert packet lacks diaSource.ra".into()));
    assert!(alerts[1].is_ok());
    // Every cutout null: an alert with no stamps (the caller decides).
    let file = rewrite(Codec::Null, |_, r| {
        Some(null_field(
            r,
            &["cutoutScience", "cutoutTemplate", "cutoutDifference"],
        ))
    });
    let alerts = read_alerts(&file, &Schemas::new(), "").expect("reads");
    assert!(alerts
        .iter()
        .all(|a| a.as_ref().is_ok_and(|a| a.cutouts.is_empty())));
}

#[test]
fn bad_packets_name_their_fault() {
    let reason = |bytes: &[u8]| {
        read_alerts(bytes, &Schemas::new(), "")
            .map(|_| ())
            .map_err(|e| e.reason())
    };
    let packet = read("lsst-alerts", RUBIN[0].0);
    // Truncated: the record ends early.
    assert_eq!(reason(&packet[..packet.len() / 2]), Err("avro"));
    assert_eq!(reason(&packet[..3]), Err("avro"));
    let mut one = packet.clone();
    one[0] = 1;
    assert_eq!(reason(&one), Err("magic"));
    let mut unknown = packet.clone();
    unknown[1..5].copy_from_slice(&1203u32.to_be_bytes());
    assert_eq!(reason(&unknown), Err("unknown_schema"));
    let err = read_alerts(&unknown, &Schemas::new(), "").expect_err("fails");
    assert!(err.to_string().contains("1203"), "{err}");
    let empty = rewrite(Codec::Null, |_, _| None);
    assert_eq!(reason(&empty), Err("no_alerts"));
    assert_eq!(reason(b"Obj\x01garbage"), Err("avro"));
    assert_eq!(reason(b""), Err("avro"));
    assert!(!is_packet(b"{\"obj_id\": 1}"));
    assert!(!is_packet(b"SIMPLE  ="));
    assert!(!is_packet(&[0x1f, 0x8b]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_packets_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut bytes = match which {
            3 => read("ztf-alerts", "ZTF18aaxjdyr_1661382530015060001.avro"),
            i => read("lsst-alerts", RUBIN[i].0),
        };
        for (at, value) in edits {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let len = bytes.len();
        bytes.truncate(len - cut % (len + 1));
        let _ = read_alerts(&bytes, &Schemas::new(), "");
    }
}

#[test]
fn a_skimmed_rubin_record_reads_as_the_whole_one() {
    let schemas = Schemas::new();
    for (file, id, ..) in RUBIN {
        let bytes = read("lsst-alerts", file);
        let schema = schemas.get(id).expect("schema");
        let skimmed = skim::read(&schema, &bytes[5..])
            .expect("every construct known")
            .expect("reads");
        let whole = GenericDatumReader::builder(&schema.alert)
            .writer_schemata(schema.deps.iter().collect())
            .expect("names")
            .build()
            .expect("reader")
            .read_value(&mut &bytes[5..])
            .expect("decodes");
        let (a, b) = (record::alert(&skimmed, "p"), record::alert(&whole, "p"));
        assert!(a.is_ok() && a == b, "{file}");
        let cut = skim::read(&schema, &bytes[5..bytes.len() / 2]).expect("known");
        assert_eq!(
            cut.map(|_| ()).map_err(|e| e.reason()),
            Err("avro"),
            "{file}"
        );
    }
}
