//! Pure: claimed outbox rows (joined with the object's current position)
//! become the events to publish. No I/O.

use std::collections::BTreeMap;

use crate::bus::events::ObjCreated;
use crate::bus::{ROUTING_OBJ_CREATED, ROUTING_OBJ_UPDATED};

/// What the trigger recorded: the row was inserted, or its position changed.
pub const KIND_CREATED: &str = "created";
pub const KIND_UPDATED: &str = "updated";

/// One claimed outbox row with the object's position as it is now (`None`
/// everywhere if the object has been deleted since).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub obj_id: String,
    pub kind: String,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub is_roid: Option<bool>,
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub routing_key: &'static str,
    pub obj_id: String,
    pub body: Vec<u8>,
}

/// The events for a page, and the objects left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub events: Vec<FeedEvent>,
    /// Objects deleted since, or whose position is now NULL or out of range
    /// (the worker would dead-letter them): nothing to make.
    pub skipped: Vec<(String, String)>,
}

/// One event per object: a burst of rows for one object collapses, since
/// each event carries the position read now. An insert among them makes it
/// `obj.created` (nothing was made for the object yet, so there is nothing
/// to replace); otherwise `obj.updated`.
pub fn plan(rows: &[OutboxRow]) -> Plan {
    let mut by_obj: BTreeMap<&str, (bool, &OutboxRow)> = BTreeMap::new();
    for row in rows {
        let created = row.kind == KIND_CREATED;
        by_obj
            .entry(row.obj_id.as_str())
            .and_modify(|(c, newest)| {
                *c |= created;
                // The newest row orders the event (its seq).
                if row.id > newest.id {
                    *newest = row;
                }
            })
            .or_insert((created, row));
    }
    let mut out = Plan::default();
    for (obj_id, (created, row)) in by_obj {
        match body(row) {
            Ok(body) => out.events.push(FeedEvent {
                routing_key: if created {
                    ROUTING_OBJ_CREATED
                } else {
                    ROUTING_OBJ_UPDATED
                },
                obj_id: obj_id.to_owned(),
                body,
            }),
            Err(reason) => out.skipped.push((obj_id.to_owned(), reason)),
        }
    }
    out
}

/// The `obj.created` body (also `obj.updated`'s): id, position, `is_roid`
/// when set; validated as the worker validates.
fn body(row: &OutboxRow) -> Result<Vec<u8>, String> {
    let (Some(ra), Some(dec)) = (row.ra, row.dec) else {
        return Err("deleted, or ra or dec is NULL".into());
    };
    ObjCreated::existing_body(
        &row.obj_id,
        ra,
        dec,
        row.is_roid == Some(true),
        None,
        false,
        Some(row.id),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, obj: &str, kind: &str, ra: Option<f64>, roid: Option<bool>) -> OutboxRow {
        OutboxRow {
            id,
            obj_id: obj.into(),
            kind: kind.into(),
            ra,
            dec: ra.map(|_| -5.5),
            is_roid: roid,
        }
    }

    fn json(e: &FeedEvent) -> serde_json::Value {
        serde_json::from_slice(&e.body).expect("json")
    }

    #[test]
    fn inserts_become_obj_created_with_the_contract_body() {
        let p = plan(&[row(1, "ZTF1", KIND_CREATED, Some(234.22), Some(false))]);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].routing_key, "obj.created");
        assert_eq!(
            json(&p.events[0]),
            serde_json::json!({"id": "ZTF1", "ra": 234.22, "dec": -5.5, "existing": true, "seq": 1})
        );
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn a_burst_collapses_to_one_event_per_object() {
        let p = plan(&[
            row(1, "a", KIND_UPDATED, Some(1.0), None),
            row(2, "b", KIND_UPDATED, Some(2.0), None),
            row(3, "a", KIND_UPDATED, Some(1.0), None),
            row(4, "b", KIND_CREATED, Some(2.0), None),
        ]);
        let keys: Vec<(&str, &str)> = p
            .events
            .iter()
            .map(|e| (e.obj_id.as_str(), e.routing_key))
            .collect();
        assert_eq!(keys, vec![("a", "obj.updated"), ("b", "obj.created")]);
        // Each event carries its newest row's sequence as its order.
        let seqs: Vec<i64> = p
            .events
            .iter()
            .map(|e| json(e)["seq"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, vec![3, 4]);
    }

    #[test]
    fn moving_objects_say_so_and_unusable_positions_are_skipped() {
        let p = plan(&[
            row(1, "roid", KIND_UPDATED, Some(1.0), Some(true)),
            row(2, "gone", KIND_CREATED, None, None),
            row(3, "bad", KIND_CREATED, Some(400.0), Some(false)),
        ]);
        assert_eq!(p.events.len(), 1);
        assert_eq!(json(&p.events[0])["is_roid"], serde_json::json!(true));
        let skipped: Vec<&str> = p.skipped.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(skipped, vec!["bad", "gone"]);
        assert!(p.skipped[0].1.contains("ra must be"), "{:?}", p.skipped);
    }
}
