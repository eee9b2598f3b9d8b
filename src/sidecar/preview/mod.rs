//! The HTML preview pages, for operators' eyes:
//!
//! - `GET /preview/objs/{obj_id}`: an object's thumbnails in SkyPortal's
//!   layout ([`view`]), each with its type, survey, origin, grayscale flag,
//!   modified time and links to its row and kept FITS; 404 page if unknown.
//! - `GET /preview`: the newest objects ([`PAGE_SIZE`] a page, by key
//!   `?before=`), their thumbnails as a grid, `?survey=` to keep objects
//!   with rows of one survey; the dead-letter queues ([`dead_letters`]) and
//!   the feed's outbox backlog.
//!
//! Server-rendered with askama (templates under `templates/preview/`,
//! checked at compile time, HTML-escaped), no script and no external
//! asset; a `Content-Security-Policy` forbids both. Each page is one
//! indexed query ([`crate::store::preview`]), the list page one more for
//! the backlog. Tokens: see [`super::auth::check_viewer`].

pub mod dead_letters;
mod pages;
pub mod view;

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::auth::{check_viewer, view_cookie};
use super::error::ApiError;
use super::AppState;
use crate::store::preview::{self as queries, Cursor, PAGE_SIZE};

/// No script at all; styles inline; images from here or a survey.
const CSP: &str = "default-src 'none'; img-src 'self' http: https:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// How often the sidecar refreshes the backlog and dead-letter gauges.
pub const GAUGES_INTERVAL: Duration = Duration::from_secs(30);

/// A page, or an error page, with the headers every page gets.
pub struct Page {
    status: StatusCode,
    html: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::response::Html(self.html)).into_response();
        let h = r.headers_mut();
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        r
    }
}

impl From<ApiError> for Page {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        if let ApiError::Internal { public, cause } = &e {
            tracing::error!(status = status.as_u16(), message = %public, cause = %format!("{cause:#}"), "preview page failed");
        }
        Page {
            status,
            html: pages::error(status, &e.to_string()),
        }
    }
}

fn rendered(html: Result<String, askama::Error>) -> Result<Page, Page> {
    match html {
        Ok(html) => Ok(Page {
            status: StatusCode::OK,
            html,
        }),
        Err(e) => Err(ApiError::internal("cannot render the page", e).into()),
    }
}

/// A request allowed to see the pages. A token given as `?token=` is
/// moved into a cookie by a redirect to the same URL without it, so it
/// does not stay in links, history or logs of later pages.
pub struct Viewer;

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match check_viewer(parts, &state.tokens, state.preview.open) {
            Ok(None) => Ok(Viewer),
            Ok(Some(token)) => Err(move_token_to_cookie(parts, &token)),
            Err(e) => Err(Page::from(e).into_response()),
        }
    }
}

fn move_token_to_cookie(parts: &Parts, token: &str) -> Response {
    let rest: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "token")
        .collect();
    let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
    let target = if query.is_empty() {
        parts.uri.path().to_string()
    } else {
        format!("{}?{query}", parts.uri.path())
    };
    let cookie = view_cookie(token);
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    match (
        HeaderValue::from_str(&target),
        HeaderValue::from_str(&cookie),
    ) {
        (Ok(location), Ok(cookie)) => {
            h.insert(LOCATION, location);
            h.insert(SET_COOKIE, cookie);
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => Page::from(ApiError::BadRequest("Invalid token or URL".into())).into_response(),
    }
}

/// An object's thumbnails as an HTML page (scope `view`, or open with
/// `http.preview_open`; a browser may send `?token=` once).
#[utoipa::path(
    get,
    path = "/preview/objs/{obj_id}",
    tag = "preview",
    params(("obj_id" = String, Path, description = "Object id")),
    security((), ("token" = [])),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 303, description = "`?token=` moved into a cookie"),
        (status = 401, description = "Missing or unknown token (an HTML page)", content_type = "text/html"),
        (status = 403, description = "The token lacks the view scope", content_type = "text/html"),
        (status = 404, description = "No such object", content_type = "text/html"),
    )
)]
pub async fn obj_page(
    State(state): State<AppState>,
    _viewer: Viewer,
    obj_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Page, Page> {
    let Path(obj_id) = obj_id.map_err(ApiError::from)?;
    let found = queries::obj_with_thumbnails(&state.db, &obj_id)
        .await
        .map_err(super::error::db_down)?;
    let Some(obj) = found else {
        return Err(ApiError::NotFound(format!("No object with id {obj_id}")).into());
    };
    let obj = view::obj_view(obj, state.cutouts.keep_fits);
    rendered(pages::obj(&obj))
}

/// The list page's query: `survey`, `before` (`<created_at>~<id>` of the
/// last object of the previous page). Other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    survey: Option<String>,
    before: Option<String>,
}

const CURSOR_TIME: &str = "%Y-%m-%dT%H:%M:%S%.f";

pub fn format_cursor(c: &Cursor) -> String {
    format!("{}~{}", c.created_at.format(CURSOR_TIME), c.id)
}

pub fn parse_cursor(s: &str) -> Option<Cursor> {
    let (t, id) = s.split_once('~')?;
    let created_at = NaiveDateTime::parse_from_str(t, CURSOR_TIME).ok()?;
    Some(Cursor {
        created_at,
        id: id.to_string(),
    })
}

/// The newest objects with their thumbnails, the dead-letter queues and
/// the feed's backlog, as an HTML page (scope `view`, or open with
/// `http.preview_open`).
#[utoipa::path(
    get,
    path = "/preview",
    tag = "preview",
    params(
        ("survey" = Option<String>, Query, description = "Only objects with rows of this survey (ZTF, LSST, ...)"),
        ("before" = Option<String>, Query, description = "`<created_at>~<obj_id>`: the page after this object (the page's `older` link)"),
    ),
    security((), ("token" = [])),
    responses(
        (status = 200, description = "The page", content_type = "text/html"),
        (status = 303, description = "`?token=` moved into a cookie"),
        (status = 400, description = "Invalid survey or before", content_type = "text/html"),
        (status = 401, description = "Missing or unknown token", content_type = "text/html"),
        (status = 403, description = "The token lacks the view scope", content_type = "text/html"),
    )
)]
pub async fn list_page(
    State(state): State<AppState>,
    _viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Result<Page, Page> {
    let q: ListQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("Invalid query: {e}")))?;
    let survey = crate::surveys::normalise_survey(q.survey.as_deref())
        .map_err(|e| ApiError::BadRequest(format!("Invalid survey: {e}")))?;
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(parse_cursor(b).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Invalid before: {b:?} (expected <created_at>~<obj_id>, as the Older link gives)"
            ))
        })?),
    };
    let objs = queries::latest_objs(&state.db, before.as_ref(), survey.as_deref(), PAGE_SIZE)
        .await
        .map_err(super::error::db_down)?;
    let backlog = queries::feed_backlog(&state.db)
        .await
        .map_err(super::error::db_down)?;
    let dead = state.preview.dead_letters.read(true).await;
    record_gauges(backlog, &dead);
    let older = (objs.len() as u64 == PAGE_SIZE)
        .then(|| objs.last())
        .flatten()
        .map(|o| {
            let cursor = Cursor {
                created_at: o.obj.created_at,
                id: o.obj.id.clone(),
            };
            let mut pairs = vec![("before", format_cursor(&cursor))];
            if let Some(s) = &survey {
                pairs.push(("survey", s.clone()));
            }
            format!(
                "/preview?{}",
                serde_urlencoded::to_string(&pairs).unwrap_or_default()
            )
        });
    let keep_fits = state.cutouts.keep_fits;
    let views: Vec<view::ObjView> = objs
        .into_iter()
        .map(|o| view::obj_view(o, keep_fits))
        .collect();
    rendered(pages::list(pages::ListInput {
        objs: &views,
        survey: survey.as_deref().unwrap_or(""),
        paged: before.is_some(),
        older,
        backlog,
        dead: &dead,
    }))
}

fn record_gauges(backlog: i64, dead: &[dead_letters::DeadQueue]) {
    metrics::gauge!("thumbnails_feed_backlog").set(backlog as f64);
    for d in dead {
        if let Ok(n) = d.messages {
            metrics::gauge!("thumbnails_dead_letters", "queue" => d.queue.clone())
                .set(f64::from(n));
        }
    }
}

/// Keeps `thumbnails_feed_backlog` and `thumbnails_dead_letters` current
/// (every [`GAUGES_INTERVAL`], the first at once) until `shutdown`.
pub async fn gauges_loop(state: AppState, shutdown: CancellationToken) {
    loop {
        match queries::feed_backlog(&state.db).await {
            Ok(backlog) => {
                let dead = state.preview.dead_letters.read(false).await;
                record_gauges(backlog, &dead);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the feed backlog"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GAUGES_INTERVAL) => {}
        }
    }
}

/// What the pages need beside the [`AppState`] they share with the API.
pub struct Preview {
    /// `http.preview_open`.
    pub open: bool,
    pub dead_letters: dead_letters::DeadLetters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_any_id() {
        for id in ["ZTF21aaa", "a~b", "<script>", ""] {
            let c = Cursor {
                created_at: chrono::DateTime::from_timestamp(1_765_000_000, 123_456_000)
                    .expect("time")
                    .naive_utc(),
                id: id.into(),
            };
            assert_eq!(parse_cursor(&format_cursor(&c)), Some(c));
        }
        assert_eq!(parse_cursor("yesterday~x"), None);
        assert_eq!(parse_cursor("no tilde"), None);
    }
}
