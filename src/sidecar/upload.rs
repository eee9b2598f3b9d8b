//! `POST /api/thumbnail`: validate everything, then stage the file, write
//! the row and its outbox event (in a transaction shared with concurrent
//! uploads, see [`super::committer`]), place the file, commit,
//! publish.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use sea_orm::EntityTrait;
use serde_json::Value;

use super::api::{self, UploadBody};
use super::auth::Caller;
use super::error::{commit_failed, db_down, storage_failed, ApiError};
use super::{metrics, AppState};
use crate::bus::BusError;
use crate::config::Scope;
use crate::cutouts::{self, CutoutSettings, Kind, Orientation};
use crate::files::inspect_png;
use crate::files::{FileStore, RelPath};
use crate::store::committer::{self, CommitError};
use crate::store::entities::obj;
use crate::store::outbox;
use crate::surveys::{normalise_survey, ThumbnailType};

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
        (status = 503, description = "The file storage is read-only or does not answer; nothing was kept", body = api::ErrorReply),
        (status = 507, description = "The file storage is full; nothing was kept", body = api::ErrorReply),
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

/// Base64 with or without padding; whitespace (line breaks) is ignored.
fn decode_base64(data: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let cleaned: std::borrow::Cow<'_, [u8]> = if data.bytes().any(|b| b.is_ascii_whitespace()) {
        data.bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        data.as_bytes().into()
    };
    STANDARD
        .decode(&cleaned)
        .or_else(|_| STANDARD_NO_PAD.decode(&cleaned))
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "Invalid/missing parameters: data: not valid base64 ({e})"
            ))
        })
}

fn invalid_obj(obj_id: &str) -> ApiError {
    ApiError::BadRequest(format!("Invalid obj_id: {obj_id}"))
}

/// Whether Postgres can hold `obj_id` as a key at all.
fn obj_id_is_possible(obj_id: &str) -> bool {
    !obj_id.is_empty() && !obj_id.contains('\0')
}

/// Checks the obj_id is one Postgres can hold and that it exists; the
/// object's row.
pub async fn check_obj(state: &AppState, obj_id: &str) -> Result<obj::Model, ApiError> {
    if !obj_id_is_possible(obj_id) {
        return Err(invalid_obj(obj_id));
    }
    obj::Entity::find_by_id(obj_id.to_string())
        .one(&state.db)
        .await
        .map_err(db_down)?
        .ok_or_else(|| invalid_obj(obj_id))
}

/// An upload that passed every check that needs no database, with its file
/// staged, and the PNG's size.
struct Prepared {
    upload: committer::Upload,
    size: usize,
}

/// Why [`prepare`] refused an upload.
enum Refused {
    /// Malformed JSON or base64: reported as is.
    Body(ApiError),
    /// A later check failed; SkyPortal reports a missing object first, so
    /// the caller checks the object before answering with `error`.
    Checked { obj_id: String, error: ApiError },
}

/// Everything an upload needs before the database, in one blocking hop:
/// parse, decode, check the image (SkyPortal's order: object, image type,
/// size, then ttype; the object is checked by the caller), stage the file.
fn prepare(files: &FileStore, settings: &CutoutSettings, body: &[u8]) -> Result<Prepared, Refused> {
    let body: UploadBody<'_> = serde_json::from_slice(body).map_err(|e| {
        Refused::Body(ApiError::BadRequest(format!(
            "Invalid/missing parameters: {e}"
        )))
    })?;
    let data = decode_base64(&body.data).map_err(Refused::Body)?;
    let refuse = |error: ApiError| Refused::Checked {
        obj_id: body.obj_id.clone(),
        error,
    };
    // A FITS cutout (plain or gzipped) is drawn first: with its ttype's
    // stretch (sub: linear, others: log), oriented by its survey.
    let (png, cutout) = if cutouts::is_gzip(&data) || data.starts_with(b"SIMPLE") {
        let kind = Kind::from_ttype(&body.ttype).unwrap_or(Kind::Science);
        let orientation = Orientation::for_survey(body.survey.as_deref());
        let png = cutouts::draw_bytes(&data, kind, orientation, settings)
            .map_err(|e| refuse(ApiError::BadRequest(format!("Invalid cutout: {e}"))))?;
        (png, Some(data))
    } else {
        (data, None)
    };
    if !obj_id_is_possible(&body.obj_id) {
        return Err(Refused::Body(invalid_obj(&body.obj_id)));
    }
    let inspected = inspect_png(&png).map_err(|e| refuse(ApiError::BadRequest(e.to_string())))?;
    let ttype: ThumbnailType = body
        .ttype
        .parse()
        .map_err(|e| refuse(ApiError::BadRequest(format!("Invalid ttype: {e}"))))?;
    // Alert stamps: one per survey, `Ztf` and `ZTF` being the same survey.
    let survey = normalise_survey(body.survey.as_deref()).map_err(|e| {
        refuse(ApiError::BadRequest(format!(
            "Invalid/missing parameters: {e}"
        )))
    })?;
    let rel = RelPath::stamp(&body.obj_id, ttype, survey.as_deref(), files.depth());
    let staged = files
        .stage_blocking(&rel, &png)
        .map_err(|e| refuse(storage_failed(std::sync::Arc::new(e))))?;
    // A stamp drawn here from a cutout keeps it too, when asked; any other
    // upload of a stamp clears the FITS an alert kept (it would be stale).
    let fits = match (cutout, survey.as_deref()) {
        (Some(cutout), Some(label)) if settings.keep_fits => Some(
            files
                .stage_fits_blocking(&body.obj_id, ttype, label, &cutout)
                .map_err(|e| refuse(storage_failed(std::sync::Arc::new(e))))?,
        ),
        _ => None,
    };
    Ok(Prepared {
        upload: committer::Upload {
            obj_id: body.obj_id,
            ttype,
            public_url: files.public_url(&rel),
            survey,
            is_grayscale: inspected.is_grayscale,
            staged,
            fits,
        },
        size: png.len(),
    })
}

async fn store_upload(state: &AppState, body: Bytes) -> Result<i32, ApiError> {
    let files = state.files.clone();
    let settings = state.cutouts.clone();
    let slot = state
        .blocking_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("image check failed", e))?;
    let prepared = tokio::task::spawn_blocking(move || {
        let prepared = prepare(&files, &settings, &body);
        drop(slot);
        prepared
    })
    .await
    .map_err(|e| ApiError::internal("image check failed", anyhow::anyhow!(e.to_string())))?;
    let Prepared { upload, size } = match prepared {
        Ok(p) => p,
        Err(Refused::Body(e)) => return Err(e),
        Err(Refused::Checked { obj_id, error }) => {
            check_obj(state, &obj_id).await?;
            return Err(error);
        }
    };
    let (obj_id, ttype) = (upload.obj_id.clone(), upload.ttype);
    let (id, event) = state.committer.commit(upload).await.map_err(|e| match e {
        CommitError::NoSuchObj => invalid_obj(&obj_id),
        CommitError::File(e) => storage_failed(e),
        e => commit_failed(e, "cannot record the thumbnail in the database"),
    })?;
    metrics::counter_bytes(size);
    tracing::info!(id, obj_id = %obj_id, ttype = %ttype, bytes = size, "thumbnail uploaded");
    publish_now(state, &event).await;
    Ok(id)
}

/// Publishes a committed event; on failure the relay task retries it.
pub async fn publish_now(state: &AppState, event: &outbox::Pending) {
    match outbox::publish_pending(&state.bus, &state.deleter, event).await {
        Ok(()) => {}
        // Said once by the connection's blocked line, not per upload.
        Err(outbox::OutboxError::Bus(BusError::Blocked)) => {
            tracing::debug!(
                event = event.id,
                "the broker blocks publishing; the outbox relay sends the event once it clears"
            );
        }
        Err(e) => {
            tracing::warn!(event = event.id, error = %super::error::cause_chain(&e), "publishing thumbnail.stored failed; the outbox relay will retry");
        }
    }
}
