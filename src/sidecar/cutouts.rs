//! `POST /api/objs/{obj_id}/cutouts`: an alert's FITS cutouts (base64,
//! plain or gzipped), drawn into the object's `new`/`ref`/`sub` stamps of
//! that survey. Each cutout is answered on its own: a bad one does not stop
//! the others; a request none of whose cutouts can be drawn is a 400.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::api;
use super::auth::Caller;
use super::error::{commit_failed, db_down, storage_failed, ApiError};
use super::upload::{check_obj, publish_now};
use super::AppState;
use crate::bus::events::cutouts::{draw_cutouts, ReadCutouts};
use crate::bus::events::CutoutsBody;
use crate::config::Scope;
use crate::cutouts::Colormap;
use crate::files::RelPath;
use crate::store::committer::{CommitError, Upload};
use crate::store::cutouts::{create_objs, NewObj};
use crate::store::StoreError;
use crate::surveys::ThumbnailType;

const PREFIX: &str = "Cutouts failed to post: ";

/// The request body (the obj_id is in the path).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CutoutsRequest {
    /// The alert stream, e.g. `ZTF` or `LSST` (upper-cased): it keys the
    /// stamps and orients them (ZTF: flipped; LSST: rotated by ROTPA).
    survey: String,
    /// Science cutout, base64 of a FITS or gzipped FITS file -> `new`.
    #[schema(rename = "cutoutScience")]
    cutout_science: Option<String>,
    /// Template cutout -> `ref`.
    #[schema(rename = "cutoutTemplate")]
    cutout_template: Option<String>,
    /// Difference cutout -> `sub`.
    #[schema(rename = "cutoutDifference")]
    cutout_difference: Option<String>,
}

/// What happened to one cutout: its thumbnail, or why not.
#[derive(Debug, Serialize, ToSchema)]
pub struct CutoutResult {
    /// The thumbnail's id, when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    /// `new`, `ref` or `sub`.
    #[serde(rename = "type")]
    pub ttype: String,
    /// Why the cutout was not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `{"status": "success", "data": {"cutoutScience": {...}, ...}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct CutoutsReply {
    #[schema(example = "success")]
    pub status: String,
    pub data: BTreeMap<String, CutoutResult>,
}

/// Draw an alert's cutouts into the object's stamps.
#[utoipa::path(
    post,
    path = "/api/objs/{obj_id}/cutouts",
    tag = "thumbnails",
    params(("obj_id" = String, Path, description = "An existing object's id")),
    request_body = CutoutsRequest,
    security(("token" = [])),
    responses(
        (status = 200, description = "Each cutout's thumbnail id or error", body = CutoutsReply),
        (status = 400, description = "No cutout could be drawn, or the body is invalid; nothing was written", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the upload scope", body = api::ErrorReply),
        (status = 413, description = "Body larger than http.max_body_bytes"),
    )
)]
pub async fn post_cutouts(
    State(state): State<AppState>,
    caller: Caller,
    Path(obj_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let result = async {
        caller.require(Scope::Upload)?;
        let body = body?;
        // Its own task: a client that disconnects does not cancel a commit.
        tokio::spawn(async move { store_cutouts(&state, obj_id, body).await })
            .await
            .map_err(|e| {
                ApiError::internal("the cutouts task failed", anyhow::anyhow!(e.to_string()))
            })?
    }
    .await;
    match result {
        Ok(data) => Ok(api::success(data)),
        Err(e) => Err(e.prefixed(PREFIX)),
    }
}

async fn store_cutouts(
    state: &AppState,
    obj_id: String,
    body: Bytes,
) -> Result<BTreeMap<String, CutoutResult>, ApiError> {
    let body: CutoutsBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid/missing parameters: {e}")))?;
    let (survey, cutouts) = body
        .read()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_obj(state, &obj_id).await?;
    store_alert(state, obj_id, survey, None, cutouts).await
}

/// Draws one alert's cutouts and commits them into the object's stamps
/// (`create`: the object is created first if absent, once a stamp is
/// drawn): each cutout's answer; a 400 when none can be drawn.
pub(super) async fn store_alert(
    state: &AppState,
    obj_id: String,
    survey: String,
    create: Option<NewObj>,
    cutouts: ReadCutouts,
) -> Result<BTreeMap<String, CutoutResult>, ApiError> {
    let (settings, files) = (state.cutouts.clone(), state.files.clone());
    let slot = state
        .blocking_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("drawing failed", e))?;
    let (id, label) = (obj_id.clone(), survey.clone());
    // Draw and stage in one blocking hop.
    let (staged, mut answers) = tokio::task::spawn_blocking(move || {
        // The blocking slot is held for the whole hop.
        let _slot = slot;
        let drawn = draw_cutouts(&label, cutouts, &settings);
        let mut answers = BTreeMap::new();
        for (kind, e) in &drawn.failed {
            answers.insert(kind.field().to_owned(), failed(kind.ttype(), e.to_string()));
        }
        if let Some(e) = drawn.none_drawn() {
            return Err(ApiError::BadRequest(e.to_string()));
        }
        let gray = settings.colormap == Colormap::Gray;
        let mut staged = Vec::new();
        for (kind, png, fits) in drawn.drawn {
            let Ok(ttype) = kind.ttype().parse::<ThumbnailType>() else {
                continue;
            };
            let rel = RelPath::stamp(&id, ttype, Some(&label), files.depth());
            let fits = fits
                .map(|cutout| files.stage_fits_blocking(&id, ttype, &label, &cutout))
                .transpose()
                .map_err(|e| storage_failed(std::sync::Arc::new(e)))?;
            match files.stage_blocking(&rel, &png) {
                Ok(file) => staged.push((
                    kind,
                    Upload {
                        obj_id: id.clone(),
                        ttype,
                        public_url: files.public_url(&rel),
                        survey: Some(label.clone()),
                        is_grayscale: gray,
                        staged: file,
                        fits,
                    },
                )),
                Err(e) => return Err(storage_failed(std::sync::Arc::new(e))),
            }
        }
        Ok((staged, answers))
    })
    .await
    .map_err(|e| ApiError::internal("drawing failed", anyhow::anyhow!(e.to_string())))??;
    if let Some(obj) = create {
        create_objs(&state.db, &[obj]).await.map_err(|e| match e {
            StoreError::Db(e) => db_down(e),
            other => ApiError::internal("cannot record the object", other),
        })?;
    }
    // The committer batches the stamps (and other uploads) together.
    let committed = join_all(
        staged
            .into_iter()
            .map(|(kind, upload)| async move { (kind, state.committer.commit(upload).await) }),
    )
    .await;
    for (kind, result) in committed {
        let answer = match result {
            Ok((thumbnail, event)) => {
                publish_now(state, &event).await;
                CutoutResult {
                    id: Some(thumbnail),
                    ttype: kind.ttype().into(),
                    error: None,
                }
            }
            Err(CommitError::NoSuchObj) => {
                return Err(ApiError::BadRequest(format!("Invalid obj_id: {obj_id}")))
            }
            Err(CommitError::File(e)) => return Err(storage_failed(e)),
            Err(e) => return Err(commit_failed(e, "cannot record the stamps")),
        };
        answers.insert(kind.field().to_owned(), answer);
    }
    tracing::info!(obj_id = %obj_id, survey = %survey, stored = answers.values().filter(|a| a.id.is_some()).count(), "cutouts drawn");
    Ok(answers)
}

fn failed(ttype: &str, error: String) -> CutoutResult {
    CutoutResult {
        id: None,
        ttype: ttype.into(),
        error: Some(error),
    }
}
