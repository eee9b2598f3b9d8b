//! `GET`, `PUT`, `DELETE /api/thumbnail/{id}` and
//! `GET /api/objs/{obj_id}/thumbnails`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{json, Value};

use super::api::{self, ThumbnailEdit, ThumbnailView};
use super::auth::Caller;
use super::error::{db_down, ApiError};
use super::upload::{check_obj, publish_now};
use super::AppState;
use crate::bus::ROUTING_THUMBNAIL_STORED;
use crate::config::Scope;
use crate::files::fits_beside;
use crate::store::entities::thumbnail;
use crate::store::outbox;
use crate::surveys::ThumbnailType;

fn not_found(id: &str) -> ApiError {
    ApiError::BadRequest(format!("Cannot find Thumbnail with ID: {id}"))
}

async fn find(state: &AppState, id: &str) -> Result<thumbnail::Model, ApiError> {
    let Ok(n) = id.parse::<i32>() else {
        return Err(not_found(id));
    };
    thumbnail::Entity::find_by_id(n)
        .one(&state.db)
        .await
        .map_err(db_down)?
        .ok_or_else(|| not_found(id))
}

/// One thumbnail row.
#[utoipa::path(
    get,
    path = "/api/thumbnail/{id}",
    tag = "thumbnails",
    params(("id" = i32, Path, description = "Thumbnail id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "The row", body = api::ThumbnailReply),
        (status = 400, description = "Cannot find Thumbnail with ID", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
    )
)]
pub async fn get_thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let _ = caller;
    let Path(id) = id?;
    let row = find(&state, &id).await?;
    Ok(api::success(ThumbnailView::from(row)))
}

/// Edit a thumbnail row (scope `manage`).
#[utoipa::path(
    put,
    path = "/api/thumbnail/{id}",
    tag = "thumbnails",
    params(("id" = i32, Path, description = "Thumbnail id")),
    request_body = ThumbnailEdit,
    security(("token" = [])),
    responses(
        (status = 200, description = "Updated", body = api::EmptyReply),
        (status = 400, description = "Invalid input or unknown id", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the manage scope", body = api::ErrorReply),
    )
)]
pub async fn put_thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Manage)?;
    let Path(id) = id?;
    let edit: ThumbnailEdit = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::BadRequest(format!("Invalid/missing parameters: {e}")))?;
    let row = find(&state, &id).await?;
    if let Some(obj_id) = &edit.obj_id {
        check_obj(&state, obj_id).await?;
    }
    let ttype = match &edit.ttype {
        Some(t) => Some(
            t.parse::<ThumbnailType>()
                .map_err(|e| ApiError::BadRequest(format!("Invalid ttype: {e}")))?,
        ),
        None => None,
    };
    let (obj_id, old_type) = (row.obj_id.clone(), row.ttype);
    let mut am = row.into_active_model();
    if let Some(v) = edit.obj_id {
        am.obj_id = Set(v);
    }
    if let Some(t) = ttype {
        am.ttype = Set(Some(t.into()));
    }
    if let Some(v) = edit.file_uri {
        am.file_uri = Set(Some(v));
    }
    if let Some(v) = edit.public_url {
        am.public_url = Set(Some(v));
    }
    if let Some(v) = edit.origin {
        am.origin = Set(Some(v));
    }
    if let Some(v) = edit.is_grayscale {
        am.is_grayscale = Set(Some(v));
    }
    am.modified = Set(Utc::now().naive_utc());

    let failed = |e: DbErr| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => ApiError::BadRequest(format!(
            "Thumbnail of this type already exists for this object (was {obj_id}, {})",
            old_type
                .map(|t| ThumbnailType::from(t).as_str())
                .unwrap_or("no type")
        )),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
            ApiError::BadRequest("Invalid obj_id".into())
        }
        _ => db_down(e),
    };
    let txn = state.db.begin().await.map_err(db_down)?;
    let updated = am.update(&txn).await.map_err(failed)?;
    let event = outbox::enqueue_pending(
        &txn,
        ROUTING_THUMBNAIL_STORED,
        outbox::stored_event(&updated),
    )
    .await
    .map_err(db_down)?;
    txn.commit().await.map_err(db_down)?;
    publish_now(&state, &event).await;
    Ok(api::success(json!({})))
}

/// Delete a thumbnail row and its stored file, with an alert stamp's kept
/// FITS (scope `manage`).
#[utoipa::path(
    delete,
    path = "/api/thumbnail/{id}",
    tag = "thumbnails",
    params(("id" = i32, Path, description = "Thumbnail id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "Deleted", body = api::EmptyReply),
        (status = 400, description = "Cannot find Thumbnail with ID", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the manage scope", body = api::ErrorReply),
    )
)]
pub async fn delete_thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Manage)?;
    let Path(id) = id?;
    // In a task of its own, so that a client leaving cannot stop it between
    // the file and the commit.
    tokio::spawn(async move { delete_row_and_file(&state, &id).await })
        .await
        .map_err(|e| {
            ApiError::internal("the delete task failed", anyhow::anyhow!(e.to_string()))
        })??;
    Ok(api::success(json!({})))
}

/// Locks the row, deletes it, sets its file (and kept FITS) aside,
/// commits, then removes them (or restores them if the commit failed). The lock makes a
/// concurrent upload of the same `(obj_id, type)` wait, so its new file is
/// never the one removed.
async fn delete_row_and_file(state: &AppState, id: &str) -> Result<(), ApiError> {
    let Ok(n) = id.parse::<i32>() else {
        return Err(not_found(id));
    };
    let txn = state.db.begin().await.map_err(db_down)?;
    let row = thumbnail::Entity::find_by_id(n)
        .lock_exclusive()
        .one(&txn)
        .await
        .map_err(db_down)?
        .ok_or_else(|| not_found(id))?;
    thumbnail::Entity::delete_by_id(row.id)
        .exec(&txn)
        .await
        .map_err(db_down)?;
    // The PNG, and an alert stamp's kept FITS beside it (if any).
    let fits = row
        .file_uri
        .as_deref()
        .and_then(|uri| fits_beside(std::path::Path::new(uri)))
        .map(|p| p.to_string_lossy().into_owned());
    let mut aside = Vec::new();
    for uri in [row.file_uri.as_deref(), fits.as_deref()]
        .into_iter()
        .flatten()
    {
        match state.files.set_aside(uri).await {
            Ok(a) => aside.extend(a),
            Err(e) => {
                // Dropping `aside` restores what was set aside already.
                return Err(ApiError::internal("cannot remove the file from storage", e));
            }
        }
    }
    if let Err(e) = txn.commit().await {
        for a in aside {
            a.undo();
        }
        return Err(db_down(e));
    }
    for a in aside {
        a.remove().await;
    }
    tracing::info!(id = row.id, obj_id = %row.obj_id, "thumbnail deleted");
    Ok(())
}

/// An object's thumbnails: the newest row per `(survey, type)` (SkyPortal's
/// readers keep the same), listed oldest first.
#[utoipa::path(
    get,
    path = "/api/objs/{obj_id}/thumbnails",
    tag = "thumbnails",
    params(("obj_id" = String, Path, description = "Object id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "The newest row per (survey, type), oldest first", body = api::ThumbnailListReply),
        (status = 400, description = "Invalid obj_id", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
    )
)]
pub async fn list_for_obj(
    State(state): State<AppState>,
    caller: Caller,
    obj_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let _ = caller;
    let Path(obj_id) = obj_id?;
    check_obj(&state, &obj_id).await?;
    let rows = thumbnail::Entity::find()
        .filter(thumbnail::Column::ObjId.eq(obj_id.as_str()))
        .order_by_asc(thumbnail::Column::Id)
        .all(&state.db)
        .await
        .map_err(db_down)?;
    let views: Vec<ThumbnailView> = super::preview::view::newest_per_survey_and_type(rows)
        .into_iter()
        .map(ThumbnailView::from)
        .collect();
    Ok(api::success(views))
}

impl super::preview::view::RowKey for thumbnail::Model {
    fn key(&self) -> (Option<String>, Option<ThumbnailType>) {
        (self.survey.clone(), self.ttype.map(ThumbnailType::from))
    }
    fn age(&self) -> (chrono::NaiveDateTime, i32) {
        (self.created_at, self.id)
    }
}
