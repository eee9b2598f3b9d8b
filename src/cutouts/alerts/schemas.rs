//! Writer schemas of Confluent-framed packets, by schema id: the shipped
//! LSST versions, parsed on first use, and any a registry supplied.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;

use super::shipped::SHIPPED;
use crate::cutouts::CutoutError;

/// A writer schema: the alert record and the named types it refers to.
#[derive(Debug)]
pub struct WriterSchema {
    pub alert: Schema,
    pub deps: Vec<Schema>,
}

/// The schemas known by id. Shared by every reader of a process (an `Arc`);
/// safe to use from many threads.
#[derive(Debug, Default)]
pub struct Schemas {
    cache: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl Schemas {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids the service ships (700 = lsst.v7_0 ... 1100 = lsst.v11_0).
    pub fn shipped_ids() -> impl Iterator<Item = u32> {
        SHIPPED.iter().map(|s| s.id)
    }

    /// Whether `id` is shipped or was registered.
    pub fn knows(&self, id: u32) -> bool {
        SHIPPED.iter().any(|s| s.id == id) || self.cache.read().is_ok_and(|c| c.contains_key(&id))
    }

    /// The writer schema of `id`: [`CutoutError::UnknownSchema`] when it is
    /// neither shipped nor registered.
    pub fn get(&self, id: u32) -> Result<Arc<WriterSchema>, CutoutError> {
        if let Some(found) = self.cache.read().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(found);
        }
        let shipped = SHIPPED
            .iter()
            .find(|s| s.id == id)
            .ok_or(CutoutError::UnknownSchema(id))?;
        let (alert, deps) = Schema::parse_str_with_list(shipped.alert, shipped.deps)
            .map_err(|e| CutoutError::Schema(id, e.to_string()))?;
        Ok(self.insert(id, WriterSchema { alert, deps }))
    }

    /// Registers the schema a registry gave for `id` (a self-contained
    /// Avro schema in JSON).
    pub fn register(&self, id: u32, json: &str) -> Result<(), CutoutError> {
        let alert = Schema::parse_str(json).map_err(|e| CutoutError::Schema(id, e.to_string()))?;
        self.insert(
            id,
            WriterSchema {
                alert,
                deps: Vec::new(),
            },
        );
        Ok(())
    }

    fn insert(&self, id: u32, schema: WriterSchema) -> Arc<WriterSchema> {
        let schema = Arc::new(schema);
        if let Ok(mut cache) = self.cache.write() {
            cache.entry(id).or_insert_with(|| schema.clone()).clone()
        } else {
            schema
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_version_parses() {
        let schemas = Schemas::new();
        let ids: Vec<u32> = Schemas::shipped_ids().collect();
        assert_eq!(ids, [700, 701, 702, 703, 704, 800, 900, 1000, 1100]);
        for id in ids {
            let s = schemas.get(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(s.alert.name().map(|n| n.name()), Some("alert"));
            assert!(schemas.knows(id));
        }
    }

    #[test]
    fn unknown_ids_are_refused_until_registered() {
        let schemas = Schemas::new();
        assert_eq!(
            schemas.get(1203).map(|_| ()),
            Err(CutoutError::UnknownSchema(1203))
        );
        assert!(!schemas.knows(1203));
        let bad = schemas.register(1203, "{not json");
        assert_eq!(bad.map_err(|e| e.reason()), Err("schema"));
        let json =
            r#"{"type": "record", "name": "alert", "fields": [{"name": "x", "type": "long"}]}"#;
        schemas.register(1203, json).expect("registers");
        assert!(schemas.knows(1203));
        assert!(schemas.get(1203).is_ok());
    }
}
