//! `alert.cutouts` messages and the body of `POST /api/objs/{id}/cutouts`:
//! an alert's FITS cutouts (base64 JSON, or a whole ZTF Avro packet), read
//! and drawn into `new`/`ref`/`sub` stamps. Pure: no I/O.

use base64::Engine;
use serde::Deserialize;

use crate::cutouts::{self, CutoutError, CutoutSettings, Kind, Orientation};
use crate::surveys::normalise_survey;

/// Content type of a whole ZTF alert packet (an Avro object container file).
pub const CONTENT_TYPE_AVRO: &str = "avro/binary";
/// The first bytes of every Avro object container file.
const AVRO_MAGIC: &[u8] = b"Obj\x01";

/// The cutouts of one alert, as JSON carries them (base64, FITS or gzipped
/// FITS). The message form adds `obj_id` and, optionally, `ra` and `dec`.
#[derive(Debug, Default, Deserialize)]
pub struct CutoutsBody {
    pub survey: Option<String>,
    #[serde(rename = "cutoutScience")]
    pub science: Option<String>,
    #[serde(rename = "cutoutTemplate")]
    pub template: Option<String>,
    #[serde(rename = "cutoutDifference")]
    pub difference: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CutoutsMessage {
    obj_id: String,
    ra: Option<f64>,
    dec: Option<f64>,
    #[serde(flatten)]
    body: CutoutsBody,
}

/// Why one cutout of an alert could not be drawn; the others go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StampError {
    #[error("{0} is not base64")]
    NotBase64(&'static str),
    #[error("{field}: {error}")]
    Cutout {
        field: &'static str,
        error: CutoutError,
    },
}

impl StampError {
    /// A short label for metrics and dead-letter reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            StampError::NotBase64(_) => "not_base64",
            StampError::Cutout { error, .. } => error.reason(),
        }
    }
}

/// Why an alert can never be handled (the message is dead-lettered).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidAlert {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("obj_id: {0}")]
    Id(#[from] super::InvalidEvent),
    #[error("survey is missing (ZTF, LSST, ...)")]
    NoSurvey,
    #[error("survey {0:?} is not a survey label")]
    Survey(String),
    #[error("ra and dec must come together, ra in [0, 360) and dec in [-90, 90]")]
    Position,
    #[error("no cutouts: send at least one of cutoutScience, cutoutTemplate, cutoutDifference")]
    NoCutouts,
    #[error("alert packet: {0}")]
    Packet(CutoutError),
    #[error("none of the cutouts could be drawn: {0}")]
    NoneDrawn(String),
}

impl InvalidAlert {
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidAlert::Json(_) => "json",
            InvalidAlert::Id(_) => "obj_id",
            InvalidAlert::NoSurvey | InvalidAlert::Survey(_) => "survey",
            InvalidAlert::Position => "position",
            InvalidAlert::NoCutouts => "no_cutouts",
            InvalidAlert::Packet(e) => e.reason(),
            InvalidAlert::NoneDrawn(_) => "none_drawn",
        }
    }
}

/// Each cutout sent: its bytes, or why they could not be read.
pub type ReadCutouts = Vec<(Kind, Result<Vec<u8>, StampError>)>;

/// One alert's cutouts, read but not drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCutouts {
    pub obj_id: String,
    /// Upper-case label (`ZTF`, `LSST`).
    pub survey: String,
    /// Given when the object may not exist yet: then it is created.
    pub position: Option<(f64, f64)>,
    pub cutouts: ReadCutouts,
}

/// An alert's stamps drawn: PNGs, and the cutouts that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawnAlert {
    /// Each stamp's PNG, with its original cutout when `cutouts.keep_fits`.
    pub drawn: Vec<(Kind, Vec<u8>, Option<Vec<u8>>)>,
    pub failed: Vec<(Kind, StampError)>,
}

impl CutoutsBody {
    /// The survey label, and each cutout's bytes (or why not).
    pub fn read(self) -> Result<(String, ReadCutouts), InvalidAlert> {
        let raw = self.survey.ok_or(InvalidAlert::NoSurvey)?;
        let survey = normalise_survey(Some(&raw))
            .map_err(|_| InvalidAlert::Survey(raw.clone()))?
            .ok_or(InvalidAlert::NoSurvey)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let cutouts: Vec<_> = [
            (Kind::Science, self.science),
            (Kind::Template, self.template),
            (Kind::Difference, self.difference),
        ]
        .into_iter()
        .filter_map(|(kind, data)| data.map(|d| (kind, d)))
        .map(|(kind, data)| {
            let bytes = b64
                .decode(data.trim())
                .map_err(|_| StampError::NotBase64(kind.field()));
            (kind, bytes)
        })
        .collect();
        if cutouts.is_empty() {
            return Err(InvalidAlert::NoCutouts);
        }
        Ok((survey, cutouts))
    }
}

impl AlertCutouts {
    /// Reads an `alert.cutouts` message: a ZTF Avro packet (by its content
    /// type or its magic bytes) or the JSON form.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, InvalidAlert> {
        if content_type == Some(CONTENT_TYPE_AVRO) || body.starts_with(AVRO_MAGIC) {
            let alert = cutouts::read_alert(body).map_err(InvalidAlert::Packet)?;
            super::validate_id(&alert.obj_id)?;
            let position = check_position(Some(alert.ra), Some(alert.dec))?;
            return Ok(Self {
                obj_id: alert.obj_id,
                survey: alert.survey.to_owned(),
                position,
                cutouts: alert
                    .cutouts
                    .into_iter()
                    .map(|(kind, bytes)| (kind, Ok(bytes)))
                    .collect(),
            });
        }
        let msg: CutoutsMessage =
            serde_json::from_slice(body).map_err(|e| InvalidAlert::Json(e.to_string()))?;
        super::validate_id(&msg.obj_id)?;
        let position = check_position(msg.ra, msg.dec)?;
        let (survey, cutouts) = msg.body.read()?;
        Ok(Self {
            obj_id: msg.obj_id,
            survey,
            position,
            cutouts,
        })
    }
}

fn check_position(ra: Option<f64>, dec: Option<f64>) -> Result<Option<(f64, f64)>, InvalidAlert> {
    match (ra, dec) {
        (None, None) => Ok(None),
        (Some(ra), Some(dec))
            if ra.is_finite()
                && (0.0..360.0).contains(&ra)
                && dec.is_finite()
                && (-90.0..=90.0).contains(&dec) =>
        {
            Ok(Some((ra, dec)))
        }
        _ => Err(InvalidAlert::Position),
    }
}

/// Draws every readable cutout, oriented by `survey`; CPU work (call it on
/// a blocking thread). Failing cutouts are reported, not fatal.
pub fn draw_cutouts(survey: &str, cutouts: ReadCutouts, settings: &CutoutSettings) -> DrawnAlert {
    let orientation = Orientation::for_survey(Some(survey));
    let mut out = DrawnAlert {
        drawn: Vec::new(),
        failed: Vec::new(),
    };
    for (kind, bytes) in cutouts {
        let drawn = bytes.and_then(|b| {
            let png = cutouts::draw_bytes(&b, kind, orientation, settings).map_err(|error| {
                StampError::Cutout {
                    field: kind.field(),
                    error,
                }
            })?;
            Ok((png, settings.keep_fits.then_some(b)))
        });
        match drawn {
            Ok((png, original)) => out.drawn.push((kind, png, original)),
            Err(e) => out.failed.push((kind, e)),
        }
    }
    out
}

impl DrawnAlert {
    /// All failed: the reasons, joined, for the dead-letter header.
    pub fn none_drawn(&self) -> Option<InvalidAlert> {
        self.drawn.is_empty().then(|| {
            InvalidAlert::NoneDrawn(
                self.failed
                    .iter()
                    .map(|(_, e)| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ztf-alerts");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    #[test]
    fn an_avro_packet_is_read_by_its_magic_or_its_content_type() {
        let packet = fixture("ZTF18aaxjdyr_1661382530015060001.avro");
        for ct in [None, Some(CONTENT_TYPE_AVRO)] {
            let a = AlertCutouts::parse(ct, &packet).expect("alert");
            assert_eq!(a.obj_id, "ZTF18aaxjdyr");
            assert_eq!(a.survey, "ZTF");
            assert_eq!(a.cutouts.len(), 3);
            assert!(a.position.is_some());
        }
        let garbage = AlertCutouts::parse(Some(CONTENT_TYPE_AVRO), b"not avro");
        assert_eq!(garbage.map_err(|e| e.reason()), Err("avro"));
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
        let a = AlertCutouts::parse(None, body.to_string().as_bytes()).expect("alert");
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
            AlertCutouts::parse(None, v.to_string().as_bytes())
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
            reason(
                serde_json::json!({"obj_id": "a", "survey": "ZTF", "ra": 1.0, "cutoutScience": c})
            ),
            Err("position")
        );
        assert_eq!(
            reason(
                serde_json::json!({"obj_id": "a", "survey": "ZTF", "ra": 400.0, "dec": 0.0, "cutoutScience": c})
            ),
            Err("position")
        );
        assert_eq!(
            AlertCutouts::parse(None, b"{").map_err(|e| e.reason()),
            Err("json")
        );
        // Readable but not drawable: every cutout fails.
        let a = AlertCutouts::parse(
            None,
            serde_json::json!({"obj_id": "a", "survey": "ZTF", "cutoutScience": c})
                .to_string()
                .as_bytes(),
        )
        .expect("read");
        let drawn = draw_cutouts(&a.survey, a.cutouts, &CutoutSettings::default());
        assert_eq!(drawn.none_drawn().map(|e| e.reason()), Some("none_drawn"));
    }
}
