//! `GET /static/thumbnails/...`: stored files with `Content-Type`, `ETag`
//! and `Cache-Control`. PNGs are `image/png`; an alert stamp's kept FITS
//! (`.fits.gz`) is `application/gzip`, served as stored (no
//! `Content-Encoding`), so a download is the gzipped file itself. Only names the file store can produce are served,
//! so no request reaches outside `<root>/thumbnails`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::{storage_failed, ApiError};
use super::AppState;
use crate::files::{content_type, safe_segments, Bucket, Served};

/// Uploads can be replaced under the same URL: caches revalidate with the
/// ETag after a minute.
const CACHE_CONTROL_VALUE: &str = "public, max-age=60";

/// A stored thumbnail file.
#[utoipa::path(
    get,
    path = "/static/thumbnails/{path}",
    tag = "files",
    params(("path" = String, Path, description = "`<aa>/<bb>/<obj_id>_<type>.png`, as in public_url")),
    responses(
        (status = 200, description = "The PNG (a kept FITS cutout, `.fits.gz`, is application/gzip)", content_type = "image/png"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "A path that could escape the storage root"),
        (status = 404, description = "No such file"),
    )
)]
pub async fn serve_file(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(path) = path?;
    let Some(segments) = safe_segments(&path) else {
        return Err(ApiError::BadRequest(format!(
            "Invalid path: {}",
            path.escape_default()
        )));
    };
    if let Some(bucket) = state.files.bucket() {
        return serve_object(bucket, &path, &segments, &headers).await;
    }
    let mut file = state.files.uploads_dir();
    file.extend(&segments);
    let missing = || ApiError::NotFound("File not found".into());
    // Follow links only if they stay under the uploads folder.
    let real = state
        .files
        .resolve_stored(file)
        .await
        .map_err(|e| ApiError::internal("cannot read the file", e))?
        .ok_or_else(missing)?;
    let bytes = match tokio::fs::read(&real).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(ApiError::internal("cannot read the file", e)),
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..32]);
    let etag_value =
        HeaderValue::from_str(&etag).map_err(|e| ApiError::internal("cannot build the ETag", e))?;
    let cache = HeaderValue::from_static(CACHE_CONTROL_VALUE);
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(ETAG, etag_value), (CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(&path))),
            (ETAG, etag_value),
            (CACHE_CONTROL, cache),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        bytes,
    )
        .into_response())
}

/// The same from the bucket, streamed: the store's ETag, and a 304 when
/// the store says the client's copy is current.
async fn serve_object(
    bucket: &Bucket,
    path: &str,
    segments: &[&str],
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = bucket.key_of_segments(segments);
    let if_none_match = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cache = HeaderValue::from_static(CACHE_CONTROL_VALUE);
    let got = match bucket.get_for_serving(&key, if_none_match.clone()).await {
        Ok(Served::Found(got)) => got,
        Ok(Served::Missing) => return Err(ApiError::NotFound("File not found".into())),
        Ok(Served::NotModified) => {
            let mut response = (StatusCode::NOT_MODIFIED, [(CACHE_CONTROL, cache)]).into_response();
            if let Some(tag) = if_none_match.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert(ETAG, tag);
            }
            return Ok(response);
        }
        Err(e) => return Err(storage_failed(Arc::new(e))),
    };
    let etag = got.meta.e_tag.clone();
    let size = got.meta.size;
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(path))),
            (CACHE_CONTROL, cache),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        Body::from_stream(got.into_stream()),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(ETAG, tag);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_segments;

    #[test]
    fn refuses_paths_that_could_escape() {
        assert!(safe_segments("ab/cd/ZTF1_new.png").is_some());
        assert!(safe_segments("ab/cd/~2E.~2F_new.png").is_some());
        for bad in [
            "",
            "../x",
            "ab/../../etc/passwd",
            "ab//x",
            "/etc/passwd",
            "ab/.hidden",
            "a\0b",
            "a\\b",
            "ab/%2e%2e",
            "..",
        ] {
            assert!(safe_segments(bad).is_none(), "{bad:?}");
        }
    }
}
