//! `POST /api/objs/{obj_id}/thumbnails/{type}`: make an on-demand survey
//! thumbnail (`sm`, `hst`, `chandra`, `jwst`) now.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api::{self, ThumbnailView};
use super::auth::Caller;
use super::error::{db_down, ApiError};
use super::upload::{check_obj, publish_now};
use super::AppState;
use crate::config::Scope;
use crate::store::on_demand::{has_upload, store_on_demand, OnDemandRow, OnDemandWrite};
use crate::surveys::{ThumbnailType, ON_DEMAND};

const PREFIX: &str = "Thumbnail failed to post: ";

/// Make an on-demand thumbnail (scope `upload`): resolve the image for the
/// object's position (SkyMapper SIAP lookup for `sm`, a URL template for
/// `hst`, `chandra`, `jwst`), check and classify it, store the row. A
/// failed lookup or image stores a placeholder (`outside_survey` or
/// `currently_unavailable`) and keeps an earlier real image. Ask again to
/// retry: nothing retries these in the background.
#[utoipa::path(
    post,
    path = "/api/objs/{obj_id}/thumbnails/{type}",
    tag = "thumbnails",
    params(
        ("obj_id" = String, Path, description = "Object id"),
        ("type" = String, Path, description = "sm, hst, chandra or jwst"),
    ),
    security(("token" = [])),
    responses(
        (status = 202, description = "The stored row (an image, or a placeholder)", body = api::ThumbnailReply),
        (status = 400, description = "Unknown object, no position, a type not made on request, or an uploaded thumbnail of that type exists", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the upload scope", body = api::ErrorReply),
    )
)]
pub async fn make_thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let result = async {
        caller.require(Scope::Upload)?;
        let Path((obj_id, ttype)) = path?;
        let ttype: ThumbnailType = ttype
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("Invalid ttype: {e}")))?;
        if !ON_DEMAND.contains(&ttype) {
            return Err(ApiError::BadRequest(format!(
                "Invalid ttype: '{ttype}' is not made on request (only sm, hst, chandra, jwst)"
            )));
        }
        // In a task of its own: a client that leaves does not cut the
        // fetch and write short (both are bounded by on_demand.timeout_s).
        tokio::spawn(async move { make(&state, obj_id, ttype).await })
            .await
            .map_err(|e| {
                ApiError::internal("the request task failed", anyhow::anyhow!(e.to_string()))
            })?
    }
    .await;
    match result {
        Ok(view) => Ok((StatusCode::ACCEPTED, api::success(view))),
        Err(e) => Err(e.prefixed(PREFIX)),
    }
}

async fn make(
    state: &AppState,
    obj_id: String,
    ttype: ThumbnailType,
) -> Result<ThumbnailView, ApiError> {
    let obj = check_obj(state, &obj_id).await?;
    let (Some(ra), Some(dec)) = (obj.ra, obj.dec) else {
        return Err(ApiError::BadRequest(format!(
            "Object {obj_id} has no position (ra, dec)"
        )));
    };
    if has_upload(&state.db, &obj_id, ttype)
        .await
        .map_err(db_down)?
    {
        return Err(upload_exists(&obj_id, ttype));
    }
    let resolved = state
        .on_demand
        .resolve(ttype, ra, dec, &CancellationToken::new())
        .await;
    let row = OnDemandRow {
        obj_id: obj_id.clone(),
        ttype,
        public_url: resolved.public_url().to_string(),
        is_grayscale: resolved.is_grayscale(),
    };
    match store_on_demand(&state.db, &row).await.map_err(db_down)? {
        OnDemandWrite::Stored(model, event) => {
            tracing::info!(id = model.id, obj_id = %obj_id, %ttype, url = %row.public_url, "on-demand thumbnail stored");
            publish_now(state, &event).await;
            Ok(ThumbnailView::from(model))
        }
        OnDemandWrite::Kept(model) => Ok(ThumbnailView::from(model)),
        OnDemandWrite::UploadExists => Err(upload_exists(&obj_id, ttype)),
    }
}

fn upload_exists(obj_id: &str, ttype: ThumbnailType) -> ApiError {
    ApiError::BadRequest(format!(
        "an uploaded {ttype} thumbnail exists for {obj_id}; delete it first"
    ))
}
