//! `alert.cutouts` messages and the bodies of `POST /api/objs/{id}/cutouts`
//! and `POST /api/alerts`: an alert's FITS cutouts (base64 JSON), or alert
//! packets (ZTF's and Fink's container files, Rubin's Confluent-framed
//! packets), read and drawn into `new`/`ref`/`sub` stamps. Pure: no I/O.

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::cutouts::{self, CutoutError, CutoutSettings, Kind, Orientation, Schemas};
use crate::surveys::normalise_survey;

/// Content type of alert packets (an Avro container file or a Rubin
/// packet); the bytes say which, and packets are recognised without it.
pub const CONTENT_TYPE_AVRO: &str = "avro/binary";

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
    #[error(transparent)]
    Packet(CutoutError),
    #[error("the alert holds no cutouts (every cutout is null)")]
    NoStamps,
    #[error("none of the {0} alerts could be read: {1}")]
    NoneRead(usize, String),
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
            InvalidAlert::NoStamps => "no_cutouts",
            InvalidAlert::NoneRead(..) => "no_alert_read",
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
    /// A moving object (an LSST solar-system source), when created.
    pub is_roid: bool,
    pub cutouts: ReadCutouts,
}

/// What a message or a body holds: the alerts read, and why the others
/// (records of a multi-alert file) could not be.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    pub alerts: Vec<AlertCutouts>,
    pub failed: Vec<InvalidAlert>,
}

/// How packets are read: the schemas known (shipped and registered,
/// shared by the process) and the prefix of LSST object ids.
#[derive(Debug, Clone, Default)]
pub struct PacketReader {
    pub schemas: Arc<Schemas>,
    pub lsst_obj_prefix: String,
}

impl PacketReader {
    pub fn new(settings: &CutoutSettings) -> Self {
        Self {
            schemas: Arc::new(Schemas::new()),
            lsst_obj_prefix: settings.lsst_obj_prefix.clone(),
        }
    }

    /// Every alert of a packet or container file; the file fails as a whole
    /// only when no alert in it can be read.
    pub fn read(&self, body: &[u8]) -> Result<Alerts, InvalidAlert> {
        let records = cutouts::read_alerts(body, &self.schemas, &self.lsst_obj_prefix)
            .map_err(InvalidAlert::Packet)?;
        let mut out = Alerts {
            alerts: Vec::with_capacity(records.len()),
            failed: Vec::new(),
        };
        for record in records {
            match record.map_err(InvalidAlert::Packet).and_then(from_packet) {
                Ok(alert) => out.alerts.push(alert),
                Err(e) => out.failed.push(e),
            }
        }
        if out.alerts.is_empty() {
            return Err(match out.failed.len() {
                1 => out.failed.remove(0),
                n => InvalidAlert::NoneRead(n, join(&out.failed)),
            });
        }
        Ok(out)
    }
}

fn from_packet(alert: cutouts::Alert) -> Result<AlertCutouts, InvalidAlert> {
    super::validate_id(&alert.obj_id)?;
    let position = check_position(Some(alert.ra), Some(alert.dec))?;
    if alert.cutouts.is_empty() {
        return Err(InvalidAlert::NoStamps);
    }
    Ok(AlertCutouts {
        obj_id: alert.obj_id,
        survey: alert.survey.to_owned(),
        position,
        is_roid: alert.is_roid,
        cutouts: alert
            .cutouts
            .into_iter()
            .map(|(kind, bytes)| (kind, Ok(bytes)))
            .collect(),
    })
}

/// The messages of several failures, joined for one header or reply.
pub fn join(failed: &[InvalidAlert]) -> String {
    failed
        .iter()
        .map(|e| format!("{}: {e}", e.reason()))
        .collect::<Vec<_>>()
        .join("; ")
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
    /// Reads an `alert.cutouts` message: alert packets (recognised from
    /// their bytes; `avro/binary` says so too) or the JSON form.
    pub fn parse(
        content_type: Option<&str>,
        body: &[u8],
        packets: &PacketReader,
    ) -> Result<Alerts, InvalidAlert> {
        if content_type == Some(CONTENT_TYPE_AVRO) || cutouts::is_packet(body) {
            return packets.read(body);
        }
        let msg: CutoutsMessage =
            serde_json::from_slice(body).map_err(|e| InvalidAlert::Json(e.to_string()))?;
        super::validate_id(&msg.obj_id)?;
        let position = check_position(msg.ra, msg.dec)?;
        let (survey, cutouts) = msg.body.read()?;
        Ok(Alerts {
            alerts: vec![Self {
                obj_id: msg.obj_id,
                survey,
                position,
                is_roid: false,
                cutouts,
            }],
            failed: Vec::new(),
        })
    }

    /// The schema id a registry must be asked for, if this is why `error`.
    pub fn unknown_schema(error: &InvalidAlert) -> Option<u32> {
        match error {
            InvalidAlert::Packet(CutoutError::UnknownSchema(id)) => Some(*id),
            _ => None,
        }
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
#[path = "cutouts_tests.rs"]
mod tests;
