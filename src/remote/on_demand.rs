//! The on-demand surveys (`sm`, `hst`, `chandra`, `jwst`): resolve an
//! image URL for a position (a SkyMapper SIAP CSV lookup, or a template),
//! fetch the image to check it and classify it. Made only when asked
//! (`POST /api/objs/{obj_id}/thumbnails/{type}`), once per request: the
//! worker and the passes never make these types.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Fetcher;
use crate::config::OnDemandConfig;
use crate::files::classify_image;
use crate::surveys::{
    parse_siap_csv, SiapOutcome, Source, ThumbnailType, CURRENTLY_UNAVAILABLE, ON_DEMAND,
    OUTSIDE_SURVEY,
};

#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("on_demand.{0}: {1}")]
    Template(&'static str, crate::surveys::TemplateError),
}

/// What a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A checked image.
    Image { url: String, is_grayscale: bool },
    /// The survey has nothing at the position.
    Outside(String),
    /// Nothing configured, or the lookup or the image failed.
    Unavailable(String),
}

impl Resolved {
    /// The URL to store: the image, or a placeholder.
    pub fn public_url(&self) -> &str {
        match self {
            Resolved::Image { url, .. } => url,
            Resolved::Outside(_) => OUTSIDE_SURVEY,
            Resolved::Unavailable(_) => CURRENTLY_UNAVAILABLE,
        }
    }

    pub fn is_grayscale(&self) -> Option<bool> {
        match self {
            Resolved::Image { is_grayscale, .. } => Some(*is_grayscale),
            _ => None,
        }
    }
}

pub struct OnDemand {
    fetcher: Fetcher,
    sources: HashMap<ThumbnailType, Source>,
}

impl OnDemand {
    pub fn new(config: &OnDemandConfig) -> Result<Self, OnDemandError> {
        let bad = |key| move |e| OnDemandError::Template(key, e);
        let sources = HashMap::from([
            (
                ThumbnailType::Sm,
                Source::siap_csv(&config.sm.lookup_url).map_err(bad("sm.lookup_url"))?,
            ),
            (
                ThumbnailType::Hst,
                Source::template(&config.hst.template).map_err(bad("hst.template"))?,
            ),
            (
                ThumbnailType::Chandra,
                Source::template(&config.chandra.template).map_err(bad("chandra.template"))?,
            ),
            (
                ThumbnailType::Jwst,
                Source::template(&config.jwst.template).map_err(bad("jwst.template"))?,
            ),
        ]);
        Ok(Self {
            // No start rate: requests come from users, one at a time each;
            // a 429 still pauses that server.
            fetcher: Fetcher::new(
                Duration::from_secs_f64(config.timeout_s),
                config.max_bytes,
                None,
            )?,
            sources,
        })
    }

    /// Resolves `ttype` at `(ra, dec)`. Never fails: every failure is a
    /// logged placeholder. A disabled type makes no outbound call.
    pub async fn resolve(
        &self,
        ttype: ThumbnailType,
        ra: f64,
        dec: f64,
        stop: &CancellationToken,
    ) -> Resolved {
        let resolved = match self.sources.get(&ttype) {
            None if !ON_DEMAND.contains(&ttype) => {
                Resolved::Unavailable(format!("{ttype} is not made on request"))
            }
            None | Some(Source::Disabled) => {
                Resolved::Unavailable(format!("no {ttype} source is configured"))
            }
            Some(Source::Template(t)) => self.image(&t.render(ra, dec), stop).await,
            Some(Source::SiapCsv(t)) => self.siap(&t.render(ra, dec), stop).await,
        };
        let outcome = match &resolved {
            Resolved::Image { .. } => "image",
            Resolved::Outside(_) => "outside_survey",
            Resolved::Unavailable(reason) => {
                tracing::warn!(%ttype, ra, dec, %reason, "on-demand thumbnail unavailable; placeholder stored");
                "unavailable"
            }
        };
        metrics::counter!("thumbnails_on_demand_total", "type" => ttype.as_str(), "outcome" => outcome)
            .increment(1);
        resolved
    }

    async fn siap(&self, lookup: &str, stop: &CancellationToken) -> Resolved {
        let answer = match self.fetcher.get(lookup, stop).await {
            Ok(a) if a.is_success() => a,
            Ok(a) => return Resolved::Unavailable(format!("lookup answered HTTP {}", a.status)),
            Err(e) => return Resolved::Unavailable(format!("lookup: {e}")),
        };
        match parse_siap_csv(&String::from_utf8_lossy(&answer.body)) {
            SiapOutcome::Image(url) => self.image(&url, stop).await,
            SiapOutcome::NoImages => Resolved::Outside("the lookup found no image".into()),
            SiapOutcome::Unreadable => {
                Resolved::Unavailable("the lookup answer is not a CSV table".into())
            }
        }
    }

    async fn image(&self, url: &str, stop: &CancellationToken) -> Resolved {
        let answer = match self.fetcher.get(url, stop).await {
            Ok(a) if a.is_success() => a,
            Ok(a) => return Resolved::Unavailable(format!("image answered HTTP {}", a.status)),
            Err(e) => return Resolved::Unavailable(format!("image: {e}")),
        };
        let body = answer.body;
        match tokio::task::spawn_blocking(move || classify_image(&body)).await {
            Ok(Ok(c)) if c.is_blank => Resolved::Outside("the image is blank".into()),
            Ok(Ok(c)) => Resolved::Image {
                url: url.to_string(),
                is_grayscale: c.is_grayscale,
            },
            Ok(Err(e)) => Resolved::Unavailable(format!("image: {e}")),
            Err(e) => Resolved::Unavailable(format!("image decode task: {e}")),
        }
    }
}
