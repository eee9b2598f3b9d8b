//! `Authorization: token <T>` (SkyPortal's header) against `http.tokens`.
//!
//! Tokens are kept as sha256 digests and compared in constant time against
//! every configured token; a token is never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::{Scope, TokenConfig};

pub struct Tokens {
    entries: Vec<([u8; 32], Vec<Scope>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn new(config: &[TokenConfig]) -> Self {
        Self {
            entries: config
                .iter()
                .map(|t| (digest(&t.token), t.scopes.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scopes of `presented`, if it is a configured token. Every entry is
    /// compared, in constant time, whatever matches.
    pub fn scopes_of(&self, presented: &str) -> Option<Vec<Scope>> {
        let d = digest(presented);
        let mut found: Option<Vec<Scope>> = None;
        for (known, scopes) in &self.entries {
            if bool::from(known.ct_eq(&d)) && found.is_none() {
                found = Some(scopes.clone());
            }
        }
        found
    }
}

/// A request with a valid token; its scopes decide what it may do.
#[derive(Debug)]
pub struct Caller {
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "Forbidden: this token lacks the '{}' scope",
                scope.as_str()
            )))
        }
    }
}

/// The token part of `Authorization: token <T>` (the scheme is matched
/// case-insensitively; `Bearer` is accepted too).
fn presented_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let ok = scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    let token = token.trim();
    (ok && !token.is_empty()).then_some(token)
}

/// The cookie a browser keeps the preview token in, set by the first page
/// opened with `?token=T` (HttpOnly, SameSite=Strict, path `/preview`).
pub const VIEW_COOKIE: &str = "thumbnails_view_token";

/// Where a preview page's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query,
    Cookie,
}

/// A browser's token: the `Authorization` header as the API takes it, else
/// the `token` query parameter, else the [`VIEW_COOKIE`] cookie.
pub fn browser_token(parts: &Parts) -> Option<(String, TokenSource)> {
    if let Some(t) = presented_token(parts) {
        return Some((t.to_string(), TokenSource::Header));
    }
    if let Some(t) = parts.uri.query().and_then(token_in_query) {
        return Some((t, TokenSource::Query));
    }
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(token_in_cookies)
        .map(|t| (t, TokenSource::Cookie))
}

fn token_in_query(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v)
}

fn token_in_cookies(header: &str) -> Option<String> {
    header.split(';').find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == VIEW_COOKIE && !value.is_empty())
            .then(|| percent_decode_str(value).decode_utf8().ok())
            .flatten()
            .map(|t| t.into_owned())
    })
}

/// The [`VIEW_COOKIE`] header for `token`: percent-encoded (a cookie value
/// takes no spaces, `;`, `,` or quotes), HttpOnly, SameSite=Strict, sent
/// back for `/preview` only.
pub fn view_cookie(token: &str) -> String {
    let value = super::preview::view::encode_segment(token);
    format!("{VIEW_COOKIE}={value}; Path=/preview; HttpOnly; SameSite=Strict")
}

/// May this request see the preview pages? Open with `http.preview_open`,
/// else a token with scope `view` (compared as the API's are). Returns the
/// token when it came in the query, so the page can set the cookie.
pub fn check_viewer(
    parts: &Parts,
    tokens: &Tokens,
    open: bool,
) -> Result<Option<String>, ApiError> {
    if open {
        return Ok(None);
    }
    let Some((token, source)) = browser_token(parts) else {
        return Err(ApiError::Unauthorized(
            "Unauthorized: these pages need a token with scope 'view': open them once with ?token=<T> (a cookie keeps it), or send 'Authorization: token <T>'".into(),
        ));
    };
    let Some(scopes) = tokens.scopes_of(&token) else {
        return Err(ApiError::Unauthorized("Unauthorized: unknown token".into()));
    };
    Caller { scopes }.require(Scope::View)?;
    Ok((source == TokenSource::Query).then_some(token))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = presented_token(parts) else {
            return Err(ApiError::Unauthorized(
                "Unauthorized: send the header 'Authorization: token <T>'".into(),
            ));
        };
        match state.tokens.scopes_of(token) {
            Some(scopes) => Ok(Caller { scopes }),
            None if state.tokens.is_empty() => Err(ApiError::Unauthorized(
                "Unauthorized: no API tokens are configured (http.tokens), so the API refuses every request that needs one".into(),
            )),
            None => Err(ApiError::Unauthorized("Unauthorized: unknown token".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_scopes_of_known_tokens_only() {
        let t = Tokens::new(&[
            TokenConfig {
                token: "uploader-token".into(),
                scopes: vec![Scope::Upload],
            },
            TokenConfig {
                token: "manager-token".into(),
                scopes: vec![Scope::Upload, Scope::Manage],
            },
        ]);
        assert_eq!(t.scopes_of("uploader-token"), Some(vec![Scope::Upload]));
        assert_eq!(
            t.scopes_of("manager-token"),
            Some(vec![Scope::Upload, Scope::Manage])
        );
        assert_eq!(t.scopes_of("uploader-toke"), None);
        assert_eq!(t.scopes_of(""), None);
        assert!(!format!("{t:?}").contains("uploader"));
    }

    #[test]
    fn parses_the_skyportal_header() {
        let parts = |v: &str| {
            let (parts, _) = axum::http::Request::builder()
                .header(AUTHORIZATION, v)
                .body(())
                .expect("request")
                .into_parts();
            parts
        };
        assert_eq!(presented_token(&parts("token abc")), Some("abc"));
        assert_eq!(presented_token(&parts("Token  abc ")), Some("abc"));
        assert_eq!(presented_token(&parts("Bearer abc")), Some("abc"));
        assert_eq!(presented_token(&parts("Basic abc")), None);
        assert_eq!(presented_token(&parts("token")), None);
    }

    #[test]
    fn browsers_may_send_the_token_in_the_query_or_a_cookie() {
        let t = Tokens::new(&[
            TokenConfig {
                token: "viewer t&=".into(),
                scopes: vec![Scope::View],
            },
            TokenConfig {
                token: "uploader".into(),
                scopes: vec![Scope::Upload],
            },
        ]);
        let req = |uri: &str, header: Option<(&str, &str)>| {
            let mut b = axum::http::Request::builder().uri(uri);
            if let Some((k, v)) = header {
                b = b.header(k, v);
            }
            b.body(()).expect("request").into_parts().0
        };
        let query = req("/preview?survey=ZTF&token=viewer+t%26%3D", None);
        assert_eq!(
            check_viewer(&query, &t, false).ok(),
            Some(Some("viewer t&=".into()))
        );
        let cookie = req(
            "/preview",
            Some(("cookie", "a=b; thumbnails_view_token=uploader")),
        );
        assert_eq!(
            check_viewer(&cookie, &t, false)
                .map_err(|e| e.status().as_u16())
                .err(),
            Some(403)
        );
        let header = req("/preview", Some(("authorization", "token viewer t&=")));
        assert_eq!(check_viewer(&header, &t, false).ok(), Some(None));
        let none = req("/preview?token=", None);
        assert_eq!(
            check_viewer(&none, &t, false)
                .map_err(|e| e.status().as_u16())
                .err(),
            Some(401)
        );
        assert_eq!(check_viewer(&none, &t, true).ok(), Some(None));
        let unknown = req("/preview?token=nope", None);
        assert_eq!(
            check_viewer(&unknown, &t, false)
                .map_err(|e| e.status().as_u16())
                .err(),
            Some(401)
        );
    }
}
