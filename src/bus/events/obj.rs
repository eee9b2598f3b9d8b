//! `obj.created` and `obj.updated`: parsing and validation, no I/O.

use serde::{Deserialize, Serialize};

use crate::surveys::ThumbnailType;

/// Longest object id accepted (SkyPortal ids are short; this bounds abuse).
pub const MAX_ID_LEN: usize = 256;

/// A validated `obj.created` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjCreated {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    pub is_roid: bool,
    /// Archival types to make, deduplicated, in sdss/ls/ps1 order.
    pub types: Vec<ThumbnailType>,
    pub replace: bool,
    /// Published from the database (the feed, the sweep, `replay`): the
    /// object is an `objs` row, never created by the worker; if it is gone
    /// by the time the event is handled, nothing is written. Upstream
    /// publishers leave it out: their objects are created if absent.
    pub existing: bool,
    /// The event's place in the object's history (the feed's outbox
    /// sequence): a write for an older `seq` than one already applied to the
    /// object is refused. `None`: no order (upstream `obj.created`).
    pub seq: Option<i64>,
}

/// The wire form; unknown fields are ignored for forward compatibility.
#[derive(Debug, Deserialize, Serialize)]
pub struct RawObjCreated {
    pub id: String,
    pub ra: f64,
    pub dec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_roid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// Why an event can never succeed; becomes the `x-thumbnails-error` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("id must not be empty")]
    EmptyId,
    #[error("id is longer than {MAX_ID_LEN} bytes")]
    LongId,
    #[error("id contains a control character")]
    ControlInId,
    #[error("ra must be a finite number in [0, 360), got {0}")]
    Ra(String),
    #[error("dec must be a finite number in [-90, 90], got {0}")]
    Dec(String),
    #[error("types: {0}")]
    Types(String),
}

impl ObjCreated {
    /// Parses and validates a message body.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidEvent> {
        let raw: RawObjCreated =
            serde_json::from_slice(body).map_err(|e| InvalidEvent::Json(e.to_string()))?;
        Self::try_from(raw)
    }

    /// Parses a body by its routing key: `obj.updated` carries the
    /// `obj.created` body and always means `replace` (the position changed,
    /// so stored survey URLs are stale).
    pub fn parse_routed(routing_key: &str, body: &[u8]) -> Result<Self, InvalidEvent> {
        if routing_key == crate::bus::ROUTING_OBJ_UPDATED {
            ObjUpdated::parse(body)
        } else {
            Self::parse(body)
        }
    }

    /// The body `replay` publishes for this object.
    pub fn to_json(&self) -> Vec<u8> {
        let raw = RawObjCreated {
            id: self.id.clone(),
            ra: self.ra,
            dec: self.dec,
            is_roid: self.is_roid.then_some(true),
            types: (self.types != ThumbnailType::ARCHIVAL)
                .then(|| self.types.iter().map(|t| t.to_string()).collect()),
            replace: self.replace.then_some(true),
            existing: self.existing.then_some(true),
            seq: self.seq,
        };
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// The body the database's own publishers (the feed, the sweep,
    /// `replay`) send for an `objs` row: marked `existing`, validated as the
    /// worker validates (what would be dead-lettered is refused here).
    /// `types` `None` means all three archival types.
    pub fn existing_body(
        id: &str,
        ra: f64,
        dec: f64,
        is_roid: bool,
        types: Option<&[ThumbnailType]>,
        replace: bool,
        seq: Option<i64>,
    ) -> Result<Vec<u8>, InvalidEvent> {
        let raw = RawObjCreated {
            id: id.to_owned(),
            ra,
            dec,
            is_roid: Some(is_roid),
            types: types.map(|ts| ts.iter().map(|t| t.to_string()).collect()),
            replace: Some(replace),
            existing: Some(true),
            seq,
        };
        Self::try_from(raw).map(|ev| ev.to_json())
    }
}

/// Which archival types an object has (a failed PS1 lookup's placeholder
/// counts as not having ps1 where it is due for another try).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Archival {
    pub sdss: bool,
    pub ls: bool,
    pub ps1: bool,
}

impl Archival {
    /// The types among `wanted` the object lacks, in `wanted`'s order; the
    /// sweep and `replay --missing` ask for these.
    pub fn lacking(self, wanted: &[ThumbnailType]) -> Vec<ThumbnailType> {
        wanted
            .iter()
            .copied()
            .filter(|t| match t {
                ThumbnailType::Sdss => !self.sdss,
                ThumbnailType::Ls => !self.ls,
                ThumbnailType::Ps1 => !self.ps1,
                _ => false,
            })
            .collect()
    }
}

/// `obj.updated`: the `obj.created` body for an object whose position (or
/// `is_roid`) changed. It parses to an [`ObjCreated`] with `replace` set:
/// the stored survey URLs are stale.
pub struct ObjUpdated;

impl ObjUpdated {
    pub fn parse(body: &[u8]) -> Result<ObjCreated, InvalidEvent> {
        let mut event = ObjCreated::parse(body)?;
        event.replace = true;
        Ok(event)
    }
}

impl TryFrom<RawObjCreated> for ObjCreated {
    type Error = InvalidEvent;

    fn try_from(raw: RawObjCreated) -> Result<Self, InvalidEvent> {
        validate_id(&raw.id)?;
        if !(raw.ra.is_finite() && (0.0..360.0).contains(&raw.ra)) {
            return Err(InvalidEvent::Ra(raw.ra.to_string()));
        }
        if !(raw.dec.is_finite() && (-90.0..=90.0).contains(&raw.dec)) {
            return Err(InvalidEvent::Dec(raw.dec.to_string()));
        }
        let types = match raw.types {
            None => ThumbnailType::ARCHIVAL.to_vec(),
            Some(names) => parse_types(&names)?,
        };
        Ok(Self {
            id: raw.id,
            ra: raw.ra,
            dec: raw.dec,
            is_roid: raw.is_roid.unwrap_or(false),
            types,
            replace: raw.replace.unwrap_or(false),
            existing: raw.existing.unwrap_or(false),
            seq: raw.seq,
        })
    }
}

/// An object id must be storable and printable: non-empty, bounded, and
/// free of control characters (PostgreSQL refuses NUL in text).
pub fn validate_id(id: &str) -> Result<(), InvalidEvent> {
    if id.trim().is_empty() {
        return Err(InvalidEvent::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidEvent::LongId);
    }
    if id.chars().any(char::is_control) {
        return Err(InvalidEvent::ControlInId);
    }
    Ok(())
}

/// Parses archival type names (`sdss`, `ls`, `ps1`), deduplicated, ordered.
pub fn parse_types(names: &[String]) -> Result<Vec<ThumbnailType>, InvalidEvent> {
    let mut types = Vec::new();
    for name in names {
        let t: ThumbnailType = name
            .parse()
            .map_err(|e: crate::surveys::UnknownType| InvalidEvent::Types(e.to_string()))?;
        if !ThumbnailType::ARCHIVAL.contains(&t) {
            return Err(InvalidEvent::Types(format!(
                "'{name}' is not an archival type (sdss, ls, ps1)"
            )));
        }
        types.push(t);
    }
    types.sort();
    types.dedup();
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ObjCreated, InvalidEvent> {
        ObjCreated::parse(s.as_bytes())
    }

    #[test]
    fn minimal_event_makes_all_three() {
        let e = parse(r#"{"id": "ZTF21aaaaaaa", "ra": 234.22, "dec": -22.33}"#).expect("valid");
        assert_eq!(e.id, "ZTF21aaaaaaa");
        assert_eq!(e.types, ThumbnailType::ARCHIVAL.to_vec());
        assert!(!e.is_roid && !e.replace);
    }

    #[test]
    fn options_are_read_and_extra_fields_ignored() {
        let e = parse(
            r#"{"id":"a","ra":0,"dec":90,"is_roid":true,"types":["ps1","sdss","ps1"],"replace":true,"x":1}"#,
        )
        .expect("valid");
        assert!(e.is_roid && e.replace);
        assert_eq!(e.types, vec![ThumbnailType::Sdss, ThumbnailType::Ps1]);
    }

    #[test]
    fn invalid_events_say_why() {
        let cases = [
            ("not json", "invalid JSON"),
            (r#"{"ra":1,"dec":1}"#, "missing field `id`"),
            (r#"{"id":"","ra":1,"dec":1}"#, "id must not be empty"),
            (r#"{"id":"a\u0000b","ra":1,"dec":1}"#, "control character"),
            (r#"{"id":"a","ra":360,"dec":1}"#, "ra must be"),
            (r#"{"id":"a","ra":-0.5,"dec":1}"#, "ra must be"),
            (r#"{"id":"a","ra":1,"dec":90.5}"#, "dec must be"),
            (r#"{"id":"a","ra":1,"dec":NaN}"#, "invalid JSON"),
            (r#"{"id":"a","ra":"1","dec":1}"#, "invalid JSON"),
            (
                r#"{"id":"a","ra":1,"dec":1,"types":["new"]}"#,
                "not an archival type",
            ),
            (
                r#"{"id":"a","ra":1,"dec":1,"types":["x"]}"#,
                "is not among the defined enum values",
            ),
        ];
        for (body, want) in cases {
            let e = parse(body).expect_err(body);
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        let long = format!(
            r#"{{"id":"{}","ra":1,"dec":1}}"#,
            "x".repeat(MAX_ID_LEN + 1)
        );
        assert_eq!(parse(&long), Err(InvalidEvent::LongId));
    }

    #[test]
    fn obj_updated_means_replace() {
        let body = br#"{"id":"a","ra":1,"dec":2}"#;
        let created = ObjCreated::parse_routed("obj.created", body).expect("valid");
        let updated = ObjCreated::parse_routed("obj.updated", body).expect("valid");
        assert!(!created.replace);
        assert!(updated.replace);
        assert_eq!(updated.types, ThumbnailType::ARCHIVAL.to_vec());
    }

    #[test]
    fn replay_body_round_trips() {
        let e = parse(r#"{"id":"q\"'; DROP","ra":1e-05,"dec":-0.0,"types":["ls"],"replace":true}"#)
            .expect("valid");
        assert_eq!(ObjCreated::parse(&e.to_json()), Ok(e));
    }
}
