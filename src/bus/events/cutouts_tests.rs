//! Reading `alert.cutouts` bodies: JSON, packets, and the bad ones.

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ztf-alerts");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

#[test]
fn an_avro_packet_is_read_by_its_magic_or_its_content_type() {
    let packet = fixture("ZTF18aaxjdyr_1661382530015060001.avro");
    for ct in [None, Some(CONTENT_TYPE_AVRO)] {
        let mut all = AlertCutouts::parse(ct, &packet, &PacketReader::default()).expect("alert");
        assert!(all.failed.is_empty());
        let a = all.alerts.remove(0);
        assert_eq!(a.obj_id, "ZTF18aaxjdyr");
        assert_eq!(a.survey, "ZTF");
        assert_eq!(a.cutouts.len(), 3);
        assert!(a.position.is_some());
    }
    let garbage = AlertCutouts::parse(
        Some(CONTENT_TYPE_AVRO),
        b"not avro",
        &PacketReader::default(),
    );
    assert_eq!(garbage.map_err(|e| e.reason()), Err("magic"));
}

#[test]
fn the_json_form_reads_each_cutout_on_its_own() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sci = fixture("ZTF18aaxjdyr_1661382530015060001_cutoutScience.fits.gz");
    let body = serde_json::json!({
        "obj_id": "ZTF1", "survey": "ztf", "ra": 10.0, "dec": -5.0,
        "cutoutScience": b64.encode(&sci),
        "cutoutDifference": "%%% not base64",
    });
    let a = AlertCutouts::parse(None, body.to_string().as_bytes(), &PacketReader::default())
        .expect("alert")
        .alerts
        .remove(0);
    assert_eq!(a.survey, "ZTF");
    assert_eq!(a.position, Some((10.0, -5.0)));
    assert_eq!(a.cutouts[0], (Kind::Science, Ok(sci)));
    assert_eq!(
        a.cutouts[1],
        (
            Kind::Difference,
            Err(StampError::NotBase64("cutoutDifference"))
        )
    );
    let drawn = draw_cutouts(&a.survey, a.cutouts, &CutoutSettings::default());
    assert_eq!(drawn.drawn.len(), 1);
    assert_eq!(drawn.failed[0].1.reason(), "not_base64");
    assert!(drawn.none_drawn().is_none());
}

#[test]
fn invalid_messages_name_what_is_wrong() {
    let reason = |v: serde_json::Value| {
        AlertCutouts::parse(None, v.to_string().as_bytes(), &PacketReader::default())
            .map(|_| ())
            .map_err(|e| e.reason())
    };
    let c = "AAAA";
    assert_eq!(
        reason(serde_json::json!({"survey": "ZTF", "cutoutScience": c})),
        Err("json")
    );
    assert_eq!(
        reason(serde_json::json!({"obj_id": "", "survey": "ZTF", "cutoutScience": c})),
        Err("obj_id")
    );
    assert_eq!(
        reason(serde_json::json!({"obj_id": "a", "cutoutScience": c})),
        Err("survey")
    );
    assert_eq!(
        reason(serde_json::json!({"obj_id": "a", "survey": "Z T F", "cutoutScience": c})),
        Err("survey")
    );
    assert_eq!(
        reason(serde_json::json!({"obj_id": "a", "survey": "ZTF"})),
        Err("no_cutouts")
    );
    assert_eq!(
        reason(serde_json::json!({"obj_id": "a", "survey": "ZTF", "ra": 1.0, "cutoutScience": c})),
        Err("position")
    );
    assert_eq!(
        reason(
            serde_json::json!({"obj_id": "a", "survey": "ZTF", "ra": 400.0, "dec": 0.0, "cutoutScience": c})
        ),
        Err("position")
    );
    assert_eq!(
        AlertCutouts::parse(None, b"{", &PacketReader::default()).map_err(|e| e.reason()),
        Err("json")
    );
    // Readable but not drawable: every cutout fails.
    let a = AlertCutouts::parse(
        None,
        serde_json::json!({"obj_id": "a", "survey": "ZTF", "cutoutScience": c})
            .to_string()
            .as_bytes(),
        &PacketReader::default(),
    )
    .expect("read")
    .alerts
    .remove(0);
    let drawn = draw_cutouts(&a.survey, a.cutouts, &CutoutSettings::default());
    assert_eq!(drawn.none_drawn().map(|e| e.reason()), Some("none_drawn"));
}

const LSST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lsst-alerts");

fn lsst(name: &str) -> Vec<u8> {
    std::fs::read(format!("{LSST}/{name}")).expect("fixture")
}

/// Fink's file with the first alert's cutouts replaced (the second dropped).
fn fink_with(science: Vec<u8>, template: Vec<u8>) -> Vec<u8> {
    use apache_avro::types::Value;
    let bytes = lsst("fink-2-alerts.avro");
    let reader = apache_avro::Reader::new(&bytes[..]).expect("reads");
    let schema = reader.writer_schema().clone();
    let Some(Ok(Value::Record(fields))) = reader.into_iter().next() else {
        panic!("a record");
    };
    let fields = fields
        .into_iter()
        .map(|(n, v)| match n.as_str() {
            // Fink's unions are [bytes, null].
            "cutoutScience" => (n, Value::Union(0, Box::new(Value::Bytes(science.clone())))),
            "cutoutTemplate" => (n, Value::Union(0, Box::new(Value::Bytes(template.clone())))),
            _ => (n, v),
        })
        .collect();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).expect("writer");
    writer.append_value(Value::Record(fields)).expect("append");
    writer.into_inner().expect("written")
}

#[test]
fn bad_stamps_inside_a_packet_fail_alone() {
    // NAXIS 3: the card's value changed in a real LSST stamp.
    let mut cube = lsst("170094456272322680_cutoutScience.fits");
    let card = cube
        .chunks(80)
        .position(|c| c.starts_with(b"NAXIS   ="))
        .expect("NAXIS card");
    cube[card * 80 + 29] = b'3';
    // A gzip bomb: 64 MiB of zeros in 64 KiB.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![0u8; 64 << 20]).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20);
    let body = fink_with(cube, bomb);
    let mut read = AlertCutouts::parse(None, &body, &PacketReader::default()).expect("read");
    let alert = read.alerts.remove(0);
    assert_eq!(alert.survey, "LSST");
    let drawn = draw_cutouts(&alert.survey, alert.cutouts, &CutoutSettings::default());
    let reasons: Vec<_> = drawn.failed.iter().map(|(k, e)| (*k, e.reason())).collect();
    assert_eq!(
        reasons,
        [(Kind::Science, "naxis"), (Kind::Template, "gzip_too_large")]
    );
    assert_eq!(drawn.drawn.len(), 1, "the difference is drawn");
}

#[test]
fn the_format_comes_from_the_bytes_never_from_the_survey() {
    // JSON saying LSST with ZTF's gzipped stamps: drawn from what they are.
    let b64 = base64::engine::general_purpose::STANDARD;
    let gz = fixture("ZTF18aaxjdyr_1661382530015060001_cutoutScience.fits.gz");
    let body = serde_json::json!({
        "obj_id": "LSST-gz", "survey": "LSST", "cutoutScience": b64.encode(&gz),
    });
    let mut read = AlertCutouts::parse(None, body.to_string().as_bytes(), &PacketReader::default())
        .expect("read");
    let a = read.alerts.remove(0);
    let drawn = draw_cutouts(&a.survey, a.cutouts, &CutoutSettings::default());
    assert_eq!((drawn.drawn.len(), drawn.failed.len()), (1, 0));
    // A Rubin packet sent as avro/binary, and a ZTF one without a content type.
    for (ct, body) in [
        (Some(CONTENT_TYPE_AVRO), lsst("7912941781254298.v9_0.avro")),
        (None, fixture("ZTF18aaxjdyr_1661382530015060001.avro")),
    ] {
        let read = AlertCutouts::parse(ct, &body, &PacketReader::default()).expect("read");
        assert_eq!(read.alerts.len(), 1);
    }
}
