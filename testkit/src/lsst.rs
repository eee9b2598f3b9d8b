//! Rubin packets made from the fixture packets (`tests/fixtures/lsst-alerts`)
//! with object ids of the caller's: many distinct objects from three real
//! alerts, for the benchmark and the tests.

use std::path::PathBuf;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use thumbnails::cutouts::Schemas;

/// The fixture packets: schema v9, v10 (a diaObject each) and v11 (a
/// solar-system source).
pub const PACKETS: [&str; 3] = [
    "7912941781254298.v9_0.avro",
    "170094456272322680.v10_0.avro",
    "170094456480989258.v11_0.avro",
];

/// Makes packets like the fixtures, with object ids `first`, `first + 1`,
/// ...: packet `i` is fixture `i % 3` with its diaObjectId (or ssObjectId)
/// and diaSourceId replaced.
pub struct Replicas {
    schemas: Schemas,
    templates: Vec<(u32, Value)>,
}

impl Replicas {
    pub fn load() -> anyhow::Result<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lsst-alerts");
        let schemas = Schemas::new();
        let mut templates = Vec::new();
        for file in PACKETS {
            let bytes = std::fs::read(dir.join(file))?;
            anyhow::ensure!(
                bytes.len() > 5 && bytes[0] == 0,
                "{file}: not a Rubin packet"
            );
            let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            let schema = schemas.get(id)?;
            let value = GenericDatumReader::builder(&schema.alert)
                .writer_schemata(schema.deps.iter().collect())?
                .build()?
                .read_value(&mut &bytes[5..])?;
            templates.push((id, value));
        }
        Ok(Self { schemas, templates })
    }

    /// Packet `i`, about object `id`.
    pub fn packet(&self, i: usize, id: i64) -> anyhow::Result<Vec<u8>> {
        let (schema_id, template) = &self.templates[i % self.templates.len()];
        let mut value = template.clone();
        set_ids(&mut value, id);
        let schema = self.schemas.get(*schema_id)?;
        let datum = GenericDatumWriter::builder(&schema.alert)
            .schemata(schema.deps.iter().collect())?
            .build()?
            .write_value_to_vec(value)?;
        let mut packet = Vec::with_capacity(datum.len() + 5);
        packet.push(0);
        packet.extend_from_slice(&schema_id.to_be_bytes());
        packet.extend_from_slice(&datum);
        Ok(packet)
    }
}

/// Sets the ids that name the object and the source, wherever they are.
fn set_ids(value: &mut Value, id: i64) {
    match value {
        Value::Union(_, inner) => set_ids(inner, id),
        Value::Record(fields) => {
            for (name, field) in fields.iter_mut() {
                match name.as_str() {
                    "diaObject" | "ssSource" | "diaSource" => set_ids(field, id),
                    "diaObjectId" | "ssObjectId" | "diaSourceId" => set_long(field, id),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn set_long(value: &mut Value, id: i64) {
    match value {
        Value::Union(_, inner) => set_long(inner, id),
        Value::Long(v) => *v = id,
        _ => {}
    }
}
