//! `POST /api/alerts`: one alert packet (a Rubin packet in the Confluent
//! wire format, or a ZTF one) or one Avro container file of alerts (ZTF's,
//! Fink's, BOOM's), as the raw body. Each alert's object is created if
//! absent (at the alert's position; a solar-system source as a moving
//! object), and its cutouts are drawn into `new`/`ref`/`sub` stamps as
//! `POST /api/objs/{obj_id}/cutouts` draws them. The answer lists every
//! alert: its stamps, or why it was not stored.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::api;
use super::auth::Caller;
use super::cutouts::{store_alert, CutoutResult};
use super::error::ApiError;
use super::AppState;
use crate::bus::events::cutouts::CONTENT_TYPE_AVRO;
use crate::bus::events::{AlertCutouts, Alerts};
use crate::config::Scope;
use crate::remote::schema_registry::ReadError;
use crate::store::cutouts::NewObj;

const PREFIX: &str = "Alerts failed to post: ";

/// What became of one alert of the body.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResult {
    /// The object the alert is about (ZTF objectId; LSST diaObjectId or
    /// ssObjectId, after `cutouts.lsst_obj_prefix`), when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obj_id: Option<String>,
    /// `ZTF` or `LSST`, when the alert could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey: Option<String>,
    /// Each cutout's thumbnail id or error, keyed by `cutoutScience`,
    /// `cutoutTemplate`, `cutoutDifference`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutouts: Option<BTreeMap<String, CutoutResult>>,
    /// Why the alert was not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `{"status": "success", "data": [{...}, ...]}`, one element per alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsReply {
    #[schema(example = "success")]
    pub status: String,
    pub data: Vec<AlertResult>,
}

/// Draw the cutouts of an alert packet or of a container file of alerts.
#[utoipa::path(
    post,
    path = "/api/alerts",
    tag = "thumbnails",
    request_body(
        content = Vec<u8>,
        content_type = "application/octet-stream",
        description = "One alert packet (Rubin: byte 0, a 4-byte schema id, one Avro record) or one Avro container file of ZTF or LSST alerts"
    ),
    security(("token" = [])),
    responses(
        (status = 200, description = "Each alert's stamps or error", body = AlertsReply),
        (status = 400, description = "The body is no readable packet, or no alert in it could be stored; nothing was written", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the upload scope", body = api::ErrorReply),
        (status = 413, description = "Body larger than http.max_body_bytes"),
        (status = 503, description = "The schema registry does not answer for the packet's schema id; try again later", body = api::ErrorReply),
    )
)]
pub async fn post_alerts(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let result = async {
        caller.require(Scope::Upload)?;
        let body = body?;
        // Its own task: a client that disconnects does not cancel a commit.
        tokio::spawn(async move { store_alerts(&state, body).await })
            .await
            .map_err(|e| {
                ApiError::internal("the alerts task failed", anyhow::anyhow!(e.to_string()))
            })?
    }
    .await;
    match result {
        Ok(data) => Ok(api::success(data)),
        Err(e) => Err(e.prefixed(PREFIX)),
    }
}

async fn store_alerts(state: &AppState, body: Bytes) -> Result<Vec<AlertResult>, ApiError> {
    // Always a packet here: the bytes say which kind, or why none.
    let Alerts { alerts, failed } = state
        .alerts
        .read(Some(CONTENT_TYPE_AVRO), &body, None)
        .await
        .map_err(|e| match e {
            ReadError::Invalid(e) => ApiError::BadRequest(format!("{}: {e}", e.reason())),
            ReadError::Unavailable(e) => ApiError::Unavailable(e.to_string()),
            ReadError::Stopped => ApiError::Unavailable("shutting down".into()),
        })?;
    let mut results: Vec<AlertResult> = failed
        .iter()
        .map(|e| AlertResult {
            obj_id: None,
            survey: None,
            cutouts: None,
            error: Some(format!("{}: {e}", e.reason())),
        })
        .collect();
    let mut stored = 0;
    for AlertCutouts {
        obj_id,
        survey,
        position,
        is_roid,
        cutouts,
    } in alerts
    {
        // Created once a stamp is drawn, before it is committed.
        let create = position.map(|(ra, dec)| NewObj {
            id: obj_id.clone(),
            ra,
            dec,
            is_roid,
        });
        let answer = store_alert(state, obj_id.clone(), survey.clone(), create, cutouts).await;
        let (cutouts, error) = match answer {
            Ok(c) => {
                stored += 1;
                (Some(c), None)
            }
            Err(ApiError::BadRequest(m)) => (None, Some(m)),
            Err(e) => return Err(e),
        };
        results.push(AlertResult {
            obj_id: Some(obj_id),
            survey: Some(survey),
            cutouts,
            error,
        });
    }
    if stored == 0 {
        let why: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
        return Err(ApiError::BadRequest(format!(
            "no alert could be stored: {}",
            why.join("; ")
        )));
    }
    Ok(results)
}
