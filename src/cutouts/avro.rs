//! A ZTF alert packet: an Avro object container file (the schema in its
//! header) holding one `ztf.alert` record. Only what thumbnails need is read:
//! `objectId`, `candid`, `candidate.ra`, `candidate.dec` and the `stampData`
//! of the three nullable cutouts (the same in schema versions 1.7 to 3.5).

use apache_avro::types::Value;

use super::{CutoutError, Kind};

/// Largest single allocation the Avro decoder may make (a length field
/// claiming more fails instead of allocating). apache-avro keeps this
/// setting per process and takes the first value given: the first
/// [`read_alert`] sets it, unless the process set it before.
pub const MAX_AVRO_ALLOCATION: usize = 64 * 1024 * 1024;

/// What thumbnails need from an alert packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub obj_id: String,
    pub candid: Option<i64>,
    pub ra: f64,
    pub dec: f64,
    /// The survey whose orientation the stamps need: `"ZTF"`.
    pub survey: &'static str,
    /// The stamps present, as stored (gzipped FITS for ZTF), in
    /// [`Kind::ALL`] order.
    pub cutouts: Vec<(Kind, Vec<u8>)>,
}

/// Reads the first record of an Avro object container file as a ZTF alert.
/// An alert without any stamp is [`CutoutError::NoCutouts`].
pub fn read_alert(bytes: &[u8]) -> Result<Alert, CutoutError> {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    let avro = |e: apache_avro::Error| CutoutError::Avro(e.to_string());
    let mut reader = apache_avro::Reader::new(bytes).map_err(avro)?;
    let record = reader
        .next()
        .ok_or_else(|| CutoutError::Avro("the file holds no record".into()))?
        .map_err(avro)?;
    let obj_id = match field(&record, "objectId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(CutoutError::AlertField("objectId")),
    };
    let candid = match field(&record, "candid") {
        Some(Value::Long(c)) => Some(*c),
        _ => None,
    };
    let candidate = field(&record, "candidate").ok_or(CutoutError::AlertField("candidate"))?;
    let ra = number(field(candidate, "ra")).ok_or(CutoutError::AlertField("candidate.ra"))?;
    let dec = number(field(candidate, "dec")).ok_or(CutoutError::AlertField("candidate.dec"))?;
    let mut cutouts = Vec::with_capacity(3);
    for kind in Kind::ALL {
        let stamp = field(&record, kind.field()).and_then(|c| field(c, "stampData"));
        if let Some(Value::Bytes(b)) = stamp {
            if !b.is_empty() {
                cutouts.push((kind, b.clone()));
            }
        }
    }
    if cutouts.is_empty() {
        return Err(CutoutError::NoCutouts);
    }
    Ok(Alert {
        obj_id,
        candid,
        ra,
        dec,
        survey: "ZTF",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_avro_is_an_avro_error() {
        for bytes in [
            &b""[..],
            b"SIMPLE  =",
            &[0x1f, 0x8b, 8, 0],
            b"Obj\x01garbage",
        ] {
            let err = read_alert(bytes).expect_err("fails");
            assert_eq!(err.reason(), "avro", "{err}");
        }
    }
}
