//! A Rubin record read for thumbnails only: the writer schema is walked,
//! the top-level fields thumbnails use are built as `Value`s, everything
//! else (the `prvDiaSources` and `prvDiaForcedSources` histories, most of a
//! packet) is skipped without being built. Decoding whole packets into
//! `Value`s cost 1.7 ms a packet, ten times the drawing of its stamps.
//! A schema construct this reader does not know gives `None`: the caller
//! then decodes the whole record.

use std::collections::HashMap;

use apache_avro::schema::Name;
use apache_avro::types::Value;
use apache_avro::Schema;

use super::WriterSchema;
use crate::cutouts::CutoutError;

/// The top-level fields [`super::record`] reads.
const KEEP: [&str; 8] = [
    "diaSourceId",
    "diaSource",
    "diaObject",
    "ssSource",
    "ssObject",
    "cutoutScience",
    "cutoutTemplate",
    "cutoutDifference",
];

enum Fault {
    /// Not known here: decode the whole record instead.
    Unsupported,
    /// The bytes are not such a record.
    Bad(String),
}

struct Skim<'s> {
    names: HashMap<&'s Name, &'s Schema>,
    /// Items left to read: a block count of zero-size items (nulls) must
    /// not spin for ever.
    budget: usize,
}

/// The record's kept fields, or `None` when the schema is beyond this reader.
pub fn read(schema: &WriterSchema, bytes: &[u8]) -> Option<Result<Value, CutoutError>> {
    let Schema::Record(alert) = &schema.alert else {
        return None;
    };
    let mut skim = Skim {
        names: schema
            .deps
            .iter()
            .chain(std::iter::once(&schema.alert))
            .filter_map(|s| s.name().map(|n| (n, s)))
            .collect(),
        budget: bytes.len().saturating_mul(8).saturating_add(1024),
    };
    let mut r = bytes;
    let mut fields = Vec::with_capacity(KEEP.len());
    for field in &alert.fields {
        let keep = KEEP.contains(&field.name.as_str());
        match skim.value(&field.schema, &mut r, keep) {
            Ok(Some(v)) => fields.push((field.name.clone(), v)),
            Ok(None) => {}
            Err(Fault::Unsupported) => return None,
            Err(Fault::Bad(why)) => return Some(Err(CutoutError::Avro(why))),
        }
    }
    Some(Ok(Value::Record(fields)))
}

impl<'s> Skim<'s> {
    /// Reads one value of `schema`; built when `build`, else skipped.
    fn value(
        &mut self,
        schema: &'s Schema,
        r: &mut &[u8],
        build: bool,
    ) -> Result<Option<Value>, Fault> {
        let built = |v: Value| Ok(build.then_some(v));
        match schema {
            Schema::Null => built(Value::Null),
            Schema::Boolean => built(Value::Boolean(take(r, 1)?[0] != 0)),
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let v = long(r)?;
                built(Value::Int(
                    i32::try_from(v).map_err(|_| bad("int out of range"))?,
                ))
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos => built(Value::Long(long(r)?)),
            Schema::Float => {
                let b = take(r, 4)?;
                built(Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Schema::Double => {
                let b = take(r, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                built(Value::Double(f64::from_le_bytes(a)))
            }
            Schema::Bytes => {
                let b = sized(r)?;
                built(Value::Bytes(if build { b.to_vec() } else { Vec::new() }))
            }
            Schema::String => {
                let b = sized(r)?;
                if !build {
                    return Ok(None);
                }
                let s = std::str::from_utf8(b).map_err(|_| bad("a string is not UTF-8"))?;
                built(Value::String(s.to_owned()))
            }
            Schema::Fixed(f) => {
                let b = take(r, f.size)?;
                built(Value::Fixed(f.size, b.to_vec()))
            }
            Schema::Union(u) => {
                let i = long(r)?;
                let variant = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| bad("a union branch out of range"))?;
                let v = self.value(variant, r, build)?;
                Ok(v.map(|v| Value::Union(i as u32, Box::new(v))))
            }
            Schema::Record(rec) => {
                let mut fields = Vec::with_capacity(if build { rec.fields.len() } else { 0 });
                for f in &rec.fields {
                    // Inside a kept record, nested collections are skipped.
                    let nested = matches!(f.schema, Schema::Array(_) | Schema::Map(_));
                    let v = self.value(&f.schema, r, build && !nested)?;
                    if build {
                        fields.push((f.name.clone(), v.unwrap_or(Value::Null)));
                    }
                }
                built(Value::Record(fields))
            }
            Schema::Array(a) => {
                self.blocks(r, |s, r| s.value(&a.items, r, false).map(drop))?;
                built(Value::Null)
            }
            Schema::Map(m) => {
                self.blocks(r, |s, r| {
                    sized(r)?;
                    s.value(&m.types, r, false).map(drop)
                })?;
                built(Value::Null)
            }
            Schema::Enum(_) if !build => {
                long(r)?;
                Ok(None)
            }
            Schema::Ref { name } => {
                let target = *self.names.get(name).ok_or(Fault::Unsupported)?;
                self.value(target, r, build)
            }
            _ => Err(Fault::Unsupported),
        }
    }

    /// Avro's blocks of an array or a map: a count, negative when a byte
    /// size follows; zero ends.
    fn blocks(
        &mut self,
        r: &mut &[u8],
        mut item: impl FnMut(&mut Self, &mut &[u8]) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        loop {
            let count = long(r)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = long(r)?;
                take(
                    r,
                    usize::try_from(size).map_err(|_| bad("a negative block size"))?,
                )?;
                continue;
            }
            let count = usize::try_from(count).map_err(|_| bad("a block count out of range"))?;
            self.budget = self
                .budget
                .checked_sub(count)
                .ok_or_else(|| bad("more items than the packet can hold"))?;
            for _ in 0..count {
                item(self, r)?;
            }
        }
    }
}

fn bad(why: &str) -> Fault {
    Fault::Bad(format!("the record is not readable: {why}"))
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], Fault> {
    if r.len() < n {
        return Err(bad("it ends early"));
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

/// A zig-zag varint long.
fn long(r: &mut &[u8]) -> Result<i64, Fault> {
    let mut v: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = take(r, 1)?[0];
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(bad("a varint longer than 10 bytes"))
}

/// A length-prefixed run of bytes.
fn sized<'a>(r: &mut &'a [u8]) -> Result<&'a [u8], Fault> {
    let n = long(r)?;
    take(r, usize::try_from(n).map_err(|_| bad("a negative length"))?)
}
