//! Request and response bodies, SkyPortal-shaped, with their OpenAPI schemas.

use axum::Json;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::store::entities::thumbnail;

/// `POST /api/thumbnail`, as SkyPortal clients send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadBody<'a> {
    /// An existing object's id.
    pub obj_id: String,
    /// The PNG file, base64-encoded (16x16 to 500x500 pixels); or an alert
    /// cutout, a FITS or gzipped FITS file, drawn first with its ttype's
    /// stretch (sub: linear, others: log) and oriented by its survey (ZTF:
    /// flipped, LSST: rotated by ROTPA, none: as stored). Borrowed from the
    /// request body unless it holds JSON escapes.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub data: std::borrow::Cow<'a, str>,
    /// One of the `thumbnail_types` enum values (new, ref, sub, ...).
    pub ttype: String,
    /// Optional label of the alert stream, e.g. `ZTF` (upper-cased; 1 to 32
    /// letters, digits or `-`). One stamp per `(obj_id, ttype, survey)`;
    /// absent or blank = the archival row of `(obj_id, ttype)`.
    #[serde(default)]
    pub survey: Option<String>,
}

/// `PUT /api/thumbnail/{id}`: every field is optional; absent (or null)
/// fields are left unchanged.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailEdit {
    pub obj_id: Option<String>,
    #[serde(rename = "type", alias = "ttype")]
    #[schema(rename = "type")]
    pub ttype: Option<String>,
    pub file_uri: Option<String>,
    pub public_url: Option<String>,
    pub origin: Option<String>,
    pub is_grayscale: Option<bool>,
}

/// A thumbnail row, as SkyPortal returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThumbnailView {
    pub id: i32,
    pub created_at: NaiveDateTime,
    pub modified: NaiveDateTime,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub ttype: Option<String>,
    pub file_uri: Option<String>,
    pub public_url: Option<String>,
    pub origin: Option<String>,
    pub survey: Option<String>,
    pub is_grayscale: Option<bool>,
    pub obj_id: String,
}

impl From<thumbnail::Model> for ThumbnailView {
    fn from(m: thumbnail::Model) -> Self {
        Self {
            id: m.id,
            created_at: m.created_at,
            modified: m.modified,
            ttype: m
                .ttype
                .map(|t| crate::surveys::ThumbnailType::from(t).as_str().to_string()),
            file_uri: m.file_uri,
            public_url: m.public_url,
            origin: m.origin,
            survey: m.survey,
            is_grayscale: m.is_grayscale,
            obj_id: m.obj_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub id: i32,
}

/// `{"status": "success", "data": {"id": N}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedReply {
    #[schema(example = "success")]
    pub status: String,
    pub data: Created,
}

/// `{"status": "success", "data": <thumbnail>}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ThumbnailReply {
    #[schema(example = "success")]
    pub status: String,
    pub data: ThumbnailView,
}

/// `{"status": "success", "data": [<thumbnail>, ...]}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ThumbnailListReply {
    #[schema(example = "success")]
    pub status: String,
    pub data: Vec<ThumbnailView>,
}

/// `{"status": "success", "data": {}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct EmptyReply {
    #[schema(example = "success")]
    pub status: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// `{"status": "error", "message": "..."}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReply {
    #[schema(example = "error")]
    pub status: String,
    pub message: String,
}

pub fn success<T: Serialize>(data: T) -> Json<Value> {
    Json(json!({"status": "success", "data": data}))
}
