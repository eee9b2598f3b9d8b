//! One decoded alert record to an [`Alert`]: ZTF's (`objectId`,
//! `candidate`, cutouts with `stampData`) or Rubin's (`diaSource`,
//! `diaObject`/`ssSource`, cutouts as bytes), whichever schema wrote it
//! (ZTF 1.7 to 3.5, lsst.v7_0 to v11_x, Fink's and BOOM's supersets).

use apache_avro::types::Value;

use super::Alert;
use crate::cutouts::{CutoutError, Kind};

/// Survey labels of the alerts read here.
pub const ZTF: &str = "ZTF";
pub const LSST: &str = "LSST";

/// Reads a record of either stream; `lsst_obj_prefix` goes before LSST ids.
pub fn alert(record: &Value, lsst_obj_prefix: &str) -> Result<Alert, CutoutError> {
    if field(record, "diaSource").is_some() {
        lsst(record, lsst_obj_prefix)
    } else if field(record, "candidate").is_some() || field(record, "objectId").is_some() {
        ztf(record)
    } else {
        Err(CutoutError::AlertField(
            "diaSource (an LSST alert) or candidate (a ZTF alert)",
        ))
    }
}

fn ztf(record: &Value) -> Result<Alert, CutoutError> {
    let obj_id = match field(record, "objectId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(CutoutError::AlertField("objectId")),
    };
    let candidate = field(record, "candidate").ok_or(CutoutError::AlertField("candidate"))?;
    let ra = number(field(candidate, "ra")).ok_or(CutoutError::AlertField("candidate.ra"))?;
    let dec = number(field(candidate, "dec")).ok_or(CutoutError::AlertField("candidate.dec"))?;
    let cutouts = Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            let stamp = field(record, kind.field()).and_then(|c| field(c, "stampData"));
            bytes(stamp).map(|b| (kind, b))
        })
        .collect();
    Ok(Alert {
        obj_id,
        candid: long(field(record, "candid")),
        ra,
        dec,
        survey: ZTF,
        is_roid: false,
        cutouts,
    })
}

fn lsst(record: &Value, prefix: &str) -> Result<Alert, CutoutError> {
    let source = field(record, "diaSource").ok_or(CutoutError::AlertField("diaSource"))?;
    let ra = number(field(source, "ra")).ok_or(CutoutError::AlertField("diaSource.ra"))?;
    let dec = number(field(source, "dec")).ok_or(CutoutError::AlertField("diaSource.dec"))?;
    // Fink writes an absent diaObject as a record of nulls: no id, absent.
    let dia_object = field(record, "diaObject").and_then(|o| long(field(o, "diaObjectId")));
    // A solar-system source: ssSource (v8 on), ssObject (v7), or the
    // diaSource's own ssObjectId.
    let ss_object = ["ssSource", "ssObject"]
        .into_iter()
        .find_map(|f| field(record, f).and_then(|s| long(field(s, "ssObjectId"))))
        .or_else(|| long(field(source, "ssObjectId")))
        .filter(|&id| id != 0);
    let (id, is_roid) = match (dia_object, ss_object) {
        (Some(id), _) => (id, false),
        (None, Some(id)) => (id, true),
        (None, None) => {
            return Err(CutoutError::AlertField(
                "diaObject.diaObjectId or ssSource.ssObjectId",
            ))
        }
    };
    let cutouts = Kind::ALL
        .into_iter()
        .filter_map(|kind| bytes(field(record, kind.field())).map(|b| (kind, b)))
        .collect();
    Ok(Alert {
        obj_id: format!("{prefix}{id}"),
        candid: long(field(record, "diaSourceId")).or_else(|| long(field(source, "diaSourceId"))),
        ra,
        dec,
        survey: LSST,
        is_roid,
        cutouts,
    })
}

/// A record's field, through nullable unions; `None` if absent or null.
fn field<'v>(record: &'v Value, name: &str) -> Option<&'v Value> {
    let Value::Record(fields) = plain(record) else {
        return None;
    };
    let value = plain(&fields.iter().find(|(n, _)| n == name)?.1);
    (!matches!(value, Value::Null)).then_some(value)
}

fn plain(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Double(d) => Some(*d),
        Value::Float(f) => Some(f64::from(*f)),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

fn long(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Long(v) => Some(*v),
        Value::Int(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// Non-empty bytes, copied out of the record.
fn bytes(value: Option<&Value>) -> Option<Vec<u8>> {
    match value? {
        Value::Bytes(b) if !b.is_empty() => Some(b.clone()),
        _ => None,
    }
}
