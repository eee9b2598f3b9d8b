//! `POST /api/thumbnail`: validate everything, then stage the file, write
//! the row and its outbox event in one transaction, place the file, commit,
//! publish.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DbErr, EntityTrait, TransactionTrait};
use serde_json::Value;

use super::api::{self, UploadBody};
use super::auth::Caller;
use super::error::ApiError;
use super::image::inspect_png;
use super::{metrics, outbox, AppState};
use crate::bus::ROUTING_THUMBNAIL_STORED;
use crate::config::Scope;
use crate::files::RelPath;
use crate::store::entities::{obj, thumbnail};
use crate::surveys::ThumbnailType;

pub const ORIGIN_UPLOAD: &str = "upload";
const PREFIX: &str = "Thumbnail failed to post: ";

/// Upload a thumbnail (SkyPortal-compatible).
#[utoipa::path(
    post,
    path = "/api/thumbnail",
    tag = "thumbnails",
    request_body = UploadBody,
    security(("token" = [])),
    responses(
        (status = 200, description = "Stored", body = api::CreatedReply),
        (status = 400, description = "Invalid input; nothing was written", body = api::ErrorReply),
        (status = 401, description = "Missing or unknown token", body = api::ErrorReply),
        (status = 403, description = "The token lacks the upload scope", body = api::ErrorReply),
        (status = 413, description = "Body larger than http.max_body_bytes"),
        (status = 500, description = "Storage or database failure; nothing was kept", body = api::ErrorReply),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let result = async {
        caller.require(Scope::Upload)?;
        let body = body?;
        // In a task of its own: a client that disconnects must not cancel
        // the upload between placing the file and committing the row.
        tokio::spawn(async move { store_upload(&state, body).await })
            .await
            .map_err(|e| {
                ApiError::internal("the upload task failed", anyhow::anyhow!(e.to_string()))
            })?
    }
    .await;
    match result {
        Ok(id) => Ok(api::success(api::Created { id })),
        Err(e) => Err(e.prefixed(PREFIX)),
    }
}

fn decode_base64(data: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&cleaned)
        .or_else(|_| STANDARD_NO_PAD.decode(&cleaned))
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "Invalid/missing parameters: data: not valid base64 ({e})"
            ))
        })
}

/// Checks the obj_id is one Postgres can hold and that it exists.
pub async fn check_obj(state: &AppState, obj_id: &str) -> Result<(), ApiError> {
    let invalid = || ApiError::BadRequest(format!("Invalid obj_id: {obj_id}"));
    if obj_id.is_empty() || obj_id.contains('\0') {
        return Err(invalid());
    }
    let found = obj::Entity::find_by_id(obj_id.to_string())
        .one(&state.db)
        .await
        .map_err(|e| ApiError::internal("the database is unavailable", e))?;
    found.map(|_| ()).ok_or_else(invalid)
}

async fn store_upload(state: &AppState, body: Bytes) -> Result<i32, ApiError> {
    let body: UploadBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Invalid/missing parameters: {e}")))?;
    let png = decode_base64(&body.data)?;
    // SkyPortal's order: object, image type, size, then ttype.
    check_obj(state, &body.obj_id).await?;
    let (png, inspected) = tokio::task::spawn_blocking(move || {
        let r = inspect_png(&png);
        (png, r)
    })
    .await
    .map_err(|e| ApiError::internal("image check failed", anyhow::anyhow!(e.to_string())))?;
    let inspected = inspected.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let ttype: ThumbnailType = body
        .ttype
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("Invalid ttype: {e}")))?;

    let rel = RelPath::new(&body.obj_id, ttype, state.files.depth());
    let size = png.len();
    let staged = state
        .files
        .stage(&rel, png)
        .await
        .map_err(|e| ApiError::internal("cannot write the file to storage", e))?;
    let file_uri = staged.target().to_string_lossy().into_owned();

    let db_failed = |e: DbErr| -> ApiError {
        match e.sql_err() {
            // The object was deleted since it was checked.
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                ApiError::BadRequest(format!("Invalid obj_id: {}", body.obj_id))
            }
            _ => ApiError::internal("cannot record the thumbnail in the database", e),
        }
    };
    let now = Utc::now().naive_utc();
    let txn = state.db.begin().await.map_err(db_failed)?;
    let row = thumbnail::Entity::insert(thumbnail::ActiveModel {
        created_at: Set(now),
        modified: Set(now),
        ttype: Set(Some(ttype.into())),
        file_uri: Set(Some(file_uri)),
        public_url: Set(Some(rel.public_url())),
        origin: Set(Some(ORIGIN_UPLOAD.into())),
        survey: Set(body.survey.clone()),
        is_grayscale: Set(Some(inspected.is_grayscale)),
        obj_id: Set(body.obj_id.clone()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([thumbnail::Column::ObjId, thumbnail::Column::Ttype])
            .update_columns([
                thumbnail::Column::Modified,
                thumbnail::Column::FileUri,
                thumbnail::Column::PublicUrl,
                thumbnail::Column::Origin,
                thumbnail::Column::Survey,
                thumbnail::Column::IsGrayscale,
            ])
            .to_owned(),
    )
    .exec_with_returning(&txn)
    .await
    .map_err(db_failed)?;
    let event = outbox::enqueue(&txn, ROUTING_THUMBNAIL_STORED, &outbox::stored_event(&row))
        .await
        .map_err(db_failed)?;
    // The file goes into place just before the commit; if the commit fails
    // the previous file (or none) is put back.
    let placed = staged
        .place()
        .map_err(|e| ApiError::internal("cannot write the file to storage", e))?;
    if let Err(e) = txn.commit().await {
        placed.undo();
        return Err(db_failed(e));
    }
    placed.keep();
    metrics::counter_bytes(size);
    tracing::info!(id = row.id, obj_id = %row.obj_id, ttype = %ttype, bytes = size, "thumbnail uploaded");
    publish_now(state, event).await;
    Ok(row.id)
}

/// Publishes a committed event; on failure the relay task retries it.
pub async fn publish_now(state: &AppState, event: i64) {
    if let Err(e) = outbox::publish_one(&state.db, &state.bus, event).await {
        tracing::warn!(event, error = %super::error::cause_chain(&e), "publishing thumbnail.stored failed; the outbox relay will retry");
    }
}
