//! Alert packets, recognised from their bytes, never from a label:
//!
//! - `Obj\x01`: an Avro object container file (the schema in its header)
//!   holding one or many alerts: ZTF's packets, Fink's and BOOM's files of
//!   LSST alerts; codecs null, deflate and snappy;
//! - byte 0 then a 4-byte big-endian schema id: one Rubin alert in the
//!   Confluent wire format, decoded with the writer schema that id names
//!   ([`Schemas`]: lsst.v7_0 to v11_x shipped, others registered).
//!
//! Only what thumbnails need is read (the object, its position, the three
//! stamps as stored).

mod record;
mod schemas;
mod shipped;
mod skim;
#[cfg(test)]
mod tests;

use apache_avro::reader::datum::GenericDatumReader;

pub use record::{LSST, ZTF};
pub use schemas::{Schemas, WriterSchema};

use super::{CutoutError, Kind};

/// Largest single allocation the Avro decoder may make (a length field
/// claiming more fails instead of allocating). apache-avro keeps this
/// setting per process and takes the first value given: the first read
/// sets it, unless the process set it before.
pub const MAX_AVRO_ALLOCATION: usize = 64 * 1024 * 1024;

/// The first bytes of every Avro object container file.
const CONTAINER_MAGIC: &[u8] = b"Obj\x01";
/// The first byte of a Confluent-framed packet.
const CONFLUENT_MAGIC: u8 = 0;

/// What thumbnails need from one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// ZTF's objectId; for LSST the diaObjectId (or, for a solar-system
    /// source, the ssObjectId) in decimal after `cutouts.lsst_obj_prefix`.
    pub obj_id: String,
    /// ZTF's candid, LSST's diaSourceId.
    pub candid: Option<i64>,
    pub ra: f64,
    pub dec: f64,
    /// [`ZTF`] or [`LSST`]: the label of the stamps and their orientation.
    pub survey: &'static str,
    /// A moving object (an LSST solar-system source): no archival thumbnails.
    pub is_roid: bool,
    /// The stamps present, as stored (gzipped FITS for ZTF, plain FITS for
    /// LSST), in [`Kind::ALL`] order; empty when every cutout is null.
    pub cutouts: Vec<(Kind, Vec<u8>)>,
}

/// How a body is framed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An Avro object container file.
    Container,
    /// A Confluent-framed record with this schema id.
    Confluent(u32),
}

impl Framing {
    /// The framing of `bytes`, or why they are no alert packet.
    pub fn of(bytes: &[u8]) -> Result<Framing, CutoutError> {
        if bytes.starts_with(CONTAINER_MAGIC) {
            return Ok(Framing::Container);
        }
        match bytes {
            [CONFLUENT_MAGIC, a, b, c, d, ..] => {
                Ok(Framing::Confluent(u32::from_be_bytes([*a, *b, *c, *d])))
            }
            [CONFLUENT_MAGIC, ..] => Err(CutoutError::Avro(format!(
                "the packet is {} bytes, shorter than its 5-byte header",
                bytes.len()
            ))),
            [first, ..] => Err(CutoutError::Magic(*first)),
            [] => Err(CutoutError::Avro("the packet is empty".into())),
        }
    }
}

/// Whether `bytes` look like an alert packet rather than JSON or FITS:
/// a container file, or a first byte that no text starts with (a
/// Confluent frame, or a packet with a wrong magic byte, which
/// [`read_alerts`] then refuses with its reason).
pub fn is_packet(bytes: &[u8]) -> bool {
    bytes.starts_with(CONTAINER_MAGIC)
        || bytes
            .first()
            .is_some_and(|&b| b < 0x20 && !b" \t\r\n".contains(&b) && b != 0x1f)
}

/// Reads every alert of a packet or container file. The outer error means
/// nothing could be read (an unknown schema, a bad frame, an empty file);
/// each inner one is a record that could not be read, the others going on.
pub fn read_alerts(
    bytes: &[u8],
    schemas: &Schemas,
    lsst_obj_prefix: &str,
) -> Result<Vec<Result<Alert, CutoutError>>, CutoutError> {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    let avro = |e: apache_avro::Error| CutoutError::Avro(e.to_string());
    match Framing::of(bytes)? {
        Framing::Container => {
            let reader = apache_avro::Reader::new(bytes).map_err(avro)?;
            let mut alerts = Vec::new();
            for value in reader {
                match value {
                    Ok(value) => alerts.push(record::alert(&value, lsst_obj_prefix)),
                    Err(e) => {
                        // A corrupt block: nothing after it can be found.
                        alerts.push(Err(avro(e)));
                        break;
                    }
                }
            }
            if alerts.is_empty() {
                return Err(CutoutError::EmptyContainer);
            }
            Ok(alerts)
        }
        Framing::Confluent(id) => {
            let schema = schemas.get(id)?;
            if let Some(value) = skim::read(&schema, &bytes[5..]) {
                return Ok(vec![record::alert(&value?, lsst_obj_prefix)]);
            }
            let reader = GenericDatumReader::builder(&schema.alert)
                .writer_schemata(schema.deps.iter().collect())
                .map_err(avro)?
                .build()
                .map_err(avro)?;
            let value = reader.read_value(&mut &bytes[5..]).map_err(avro)?;
            Ok(vec![record::alert(&value, lsst_obj_prefix)])
        }
    }
}
