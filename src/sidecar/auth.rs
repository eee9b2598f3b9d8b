//! `Authorization: token <T>` (SkyPortal's header) against `http.tokens`.
//!
//! Tokens are kept as sha256 digests and compared in constant time against
//! every configured token; a token is never logged.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
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
            let name = match scope {
                Scope::Upload => "upload",
                Scope::Manage => "manage",
            };
            Err(ApiError::Forbidden(format!(
                "Forbidden: this token lacks the '{name}' scope"
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
}
