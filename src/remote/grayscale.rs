//! The grayscale pass: stored sdss/ls/ps1 (and old dr8) rows whose
//! `is_grayscale` is NULL get their image fetched and classified with the
//! uploads' 40x40 rule. An out-of-footprint answer (SDSS's 404 "outside
//! the SDSS footprint", Legacy Survey's blank image) turns the row into the
//! `outside_survey` placeholder, announced with `thumbnail.stored`.
//!
//! Better than SkyPortal's batch of 10 that one bad image stalls: fetches
//! run `concurrency` at a time from one queue (a slow image holds one slot,
//! at most `timeout_s`), at `rate_per_s` starts per second; a failure (an
//! HTML page, a body over `max_bytes`, a timeout, an HTTP error) is logged
//! and the row waits in `thumbnail_remote_attempts` (doubling from
//! `retry_base_s`, at most a day) while the others go on; a 429 pauses
//! that host for its `Retry-After` and defers its rows without counting a
//! failure. The wait lives in a small table of ours rather than in memory
//! so that restarts and several replicas keep it, and SkyPortal's tables
//! gain no column.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{FetchError, Fetched, Fetcher};
use crate::config::GrayscaleConfig;
use crate::files::classify_image;
use crate::store::remote::{self as rows, PendingRow};
use crate::surveys::{sdss_says_outside, ThumbnailType};

/// Rows read per page.
const PAGE: u64 = 200;
/// The types the pass classifies (the on-demand ones are classified when
/// they are made).
pub const TYPES: [ThumbnailType; 4] = [
    ThumbnailType::Sdss,
    ThumbnailType::Ls,
    ThumbnailType::Ps1,
    ThumbnailType::Dr8,
];

#[derive(Debug, thiserror::Error)]
pub enum GrayscaleError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("grayscale pass database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// What one row came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Classified,
    Outside,
    /// Fetch or decode failed: retried after a back-off.
    Failed,
    /// The server asked to wait (429): retried after its wait.
    Deferred,
    /// Shutdown, or the row changed meanwhile.
    Skipped,
}

/// A pass's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub classified: u64,
    pub outside: u64,
    pub failed: u64,
    pub deferred: u64,
    pub skipped: u64,
}

impl PassStats {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Classified => self.classified += 1,
            Verdict::Outside => self.outside += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Deferred => self.deferred += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }
}

pub struct Classifier {
    db: sea_orm::DatabaseConnection,
    fetcher: Fetcher,
    concurrency: usize,
    retry_base: Duration,
}

impl Classifier {
    pub fn new(
        config: &GrayscaleConfig,
        db: sea_orm::DatabaseConnection,
    ) -> Result<Self, GrayscaleError> {
        Ok(Self {
            db,
            fetcher: Fetcher::new(
                Duration::from_secs_f64(config.timeout_s),
                config.max_bytes,
                Some(config.rate_per_s),
            )?,
            concurrency: config.concurrency.max(1),
            retry_base: Duration::from_secs_f64(config.retry_base_s),
        })
    }

    /// One pass over the table, by key, `concurrency` rows at a time.
    /// Returns when every due row has a verdict, or at `stop`.
    pub async fn pass(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Result<PassStats, GrayscaleError> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running: JoinSet<Verdict> = JoinSet::new();
        let mut stats = PassStats::default();
        let mut after = 0;
        let result: Result<(), GrayscaleError> = 'pages: loop {
            let page = match rows::pending_page(&self.db, after, &TYPES, PAGE).await {
                Ok(p) => p,
                Err(e) => break 'pages Err(e.into()),
            };
            let Some(last) = page.last() else {
                break 'pages Ok(());
            };
            after = last.id;
            for row in page {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'pages Ok(()),
                    },
                    _ = stop.cancelled() => break 'pages Ok(()),
                };
                let (me, stop) = (self.clone(), stop.clone());
                running.spawn(async move {
                    let verdict = me.one(&row, &stop).await;
                    drop(permit);
                    verdict
                });
                while let Some(done) = running.try_join_next() {
                    stats.add(done.unwrap_or(Verdict::Skipped));
                }
            }
        };
        while let Some(done) = running.join_next().await {
            stats.add(done.unwrap_or(Verdict::Skipped));
        }
        result?;
        if !stop.is_cancelled() {
            rows::forget_orphans(&self.db).await?;
        }
        Ok(stats)
    }

    /// Fetches, classifies and records one row. Never fails: every error
    /// becomes a logged verdict.
    async fn one(&self, row: &PendingRow, stop: &CancellationToken) -> Verdict {
        let verdict = match self.fetcher.get(&row.url, stop).await {
            Err(FetchError::Cancelled) => Verdict::Skipped,
            Err(FetchError::RateLimited { host, wait }) => {
                tracing::debug!(id = row.id, %host, wait_s = wait.as_secs_f64(), "host asked to slow down; row deferred");
                match rows::defer(&self.db, row, wait, &format!("HTTP 429 from {host}")).await {
                    Ok(()) => Verdict::Deferred,
                    Err(e) => self.db_failed(row, e),
                }
            }
            Err(e) => self.failed(row, &e.to_string()).await,
            Ok(fetched) => self.judge(row, fetched).await,
        };
        metrics::counter!("thumbnails_grayscale_rows_total", "verdict" => label(verdict))
            .increment(1);
        verdict
    }

    async fn judge(&self, row: &PendingRow, fetched: Fetched) -> Verdict {
        let sdss = row.ttype == ThumbnailType::Sdss;
        if !fetched.is_success() {
            if sdss && sdss_says_outside(&fetched.body) {
                return self.outside(row).await;
            }
            return self.failed(row, &format!("HTTP {}", fetched.status)).await;
        }
        let body = fetched.body;
        let classified = tokio::task::spawn_blocking(move || classify_image(&body)).await;
        match classified {
            Ok(Ok(c))
                if c.is_blank && matches!(row.ttype, ThumbnailType::Ls | ThumbnailType::Dr8) =>
            {
                self.outside(row).await
            }
            Ok(Ok(c)) => match rows::set_grayscale(&self.db, row, c.is_grayscale).await {
                Ok(true) => Verdict::Classified,
                Ok(false) => Verdict::Skipped,
                Err(e) => self.db_failed(row, e),
            },
            Ok(Err(e)) => self.failed(row, &e.to_string()).await,
            Err(e) => self.failed(row, &format!("decode task: {e}")).await,
        }
    }

    async fn outside(&self, row: &PendingRow) -> Verdict {
        match rows::mark_outside(&self.db, row).await {
            Ok(Some(_event)) => {
                // The event is in the outbox: the sidecar's relay publishes it.
                tracing::info!(id = row.id, ttype = %row.ttype, url = %row.url, "outside the survey's footprint; placeholder stored");
                Verdict::Outside
            }
            Ok(None) => Verdict::Skipped,
            Err(e) => self.db_failed(row, e),
        }
    }

    async fn failed(&self, row: &PendingRow, error: &str) -> Verdict {
        match rows::record_failure(&self.db, row, error, self.retry_base).await {
            Ok(attempts) => {
                tracing::warn!(id = row.id, url = %row.url, attempts, %error, "cannot classify the image; retrying later");
                Verdict::Failed
            }
            Err(e) => self.db_failed(row, e),
        }
    }

    fn db_failed(&self, row: &PendingRow, e: sea_orm::DbErr) -> Verdict {
        tracing::warn!(id = row.id, error = %e, "cannot record the grayscale verdict; the next pass retries");
        Verdict::Failed
    }
}

fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::Classified => "classified",
        Verdict::Outside => "outside",
        Verdict::Failed => "failed",
        Verdict::Deferred => "deferred",
        Verdict::Skipped => "skipped",
    }
}

/// Runs passes every `interval_s` until `shutdown`. A pass that fails (the
/// database is away) is logged and tried again at the next interval.
pub async fn run(
    config: &GrayscaleConfig,
    db: sea_orm::DatabaseConnection,
    shutdown: CancellationToken,
) -> Result<(), GrayscaleError> {
    let classifier = Arc::new(Classifier::new(config, db)?);
    let interval = Duration::from_secs_f64(config.interval_s);
    tracing::info!(
        concurrency = config.concurrency,
        rate_per_s = config.rate_per_s,
        "grayscale pass started"
    );
    loop {
        match classifier.pass(&shutdown).await {
            Ok(s) if s != PassStats::default() => tracing::info!(
                classified = s.classified,
                outside = s.outside,
                failed = s.failed,
                deferred = s.deferred,
                "grayscale pass done"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "grayscale pass failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!("grayscale pass stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_never_touches_on_demand_types() {
        for t in crate::surveys::ON_DEMAND {
            assert!(!TYPES.contains(&t), "{t}");
        }
    }
}
