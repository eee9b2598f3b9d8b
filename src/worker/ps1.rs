//! The PS1 lookup over HTTP. The page is read by `surveys::parse_lookup_page`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::surveys::{lookup_url, parse_lookup_page, Ps1Outcome};

/// Lookups share one connection pool; each has the configured timeout.
#[derive(Clone)]
pub struct Ps1Client {
    http: reqwest::Client,
    lookup_url: String,
    in_flight: Arc<Semaphore>,
}

impl Ps1Client {
    /// `max_concurrent` lookups at most are in flight, whatever the
    /// prefetch: the PS1 service is a third party's, and a backlog must not
    /// become hundreds of simultaneous requests to it; the rest queue here.
    pub fn new(
        lookup_url: &str,
        timeout: Duration,
        max_concurrent: usize,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(max_concurrent)
            .build()?;
        Ok(Self {
            http,
            lookup_url: lookup_url.to_string(),
            in_flight: Arc::new(Semaphore::new(max_concurrent.max(1))),
        })
    }

    /// `lookup_url: ""` means no lookup at all.
    pub fn enabled(&self) -> bool {
        !self.lookup_url.is_empty()
    }

    /// Never fails: a timeout, HTTP error or unreadable page is
    /// `Unavailable`, which `replay --missing` retries later.
    pub async fn lookup(&self, ra: f64, dec: f64) -> Ps1Outcome {
        if !self.enabled() {
            return Ps1Outcome::Unavailable;
        }
        let outcome = match self.in_flight.acquire().await {
            Ok(_permit) => {
                let _in_flight =
                    crate::telemetry::metrics::InFlight::new("thumbnails_ps1_lookups_in_flight");
                self.ask(ra, dec).await
            }
            // Never closed; were it, no lookup is better than an unbounded one.
            Err(_) => Ps1Outcome::Unavailable,
        };
        let label = match outcome {
            Ps1Outcome::Image(_) => "image",
            Ps1Outcome::OutsideSurvey => "outside_survey",
            Ps1Outcome::Unavailable => "unavailable",
        };
        metrics::counter!("thumbnails_ps1_lookups_total", "outcome" => label).increment(1);
        outcome
    }

    async fn ask(&self, ra: f64, dec: f64) -> Ps1Outcome {
        let url = lookup_url(&self.lookup_url, ra, dec);
        let response = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "PS1 lookup failed");
                return Ps1Outcome::Unavailable;
            }
        };
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "PS1 lookup answered with an error");
            return Ps1Outcome::Unavailable;
        }
        match response.text().await {
            Ok(page) => parse_lookup_page(&page),
            Err(e) => {
                tracing::warn!(error = %e, "PS1 lookup page could not be read");
                Ps1Outcome::Unavailable
            }
        }
    }
}
