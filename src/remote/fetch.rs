//! Fetching one URL from a survey server: a timeout, a size cap applied
//! while the body streams in, a start rate shared by every fetch, and a
//! per-host pause after HTTP 429.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wait after a 429 without a usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest pause a server's `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    BadUrl(String),
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("answer larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The server answered 429, now or earlier: the host is paused.
    #[error("{host} asked to slow down (HTTP 429); next try in {wait:?}")]
    RateLimited { host: String, wait: Duration },
    #[error("shutting down")]
    Cancelled,
}

/// A complete answer (any status but 429), its body within the cap.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Starts at most `rate` fetches per second (all hosts together) and
/// keeps each host's 429 pause.
#[derive(Debug)]
pub struct Gate {
    interval: Option<Duration>,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    next: Instant,
    paused: HashMap<String, Instant>,
}

impl Gate {
    /// `rate_per_s: None` = no start rate (the pause after 429 still holds).
    pub fn new(rate_per_s: Option<f64>) -> Self {
        Self {
            interval: rate_per_s
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            state: Mutex::new(GateState {
                next: Instant::now(),
                paused: HashMap::new(),
            }),
        }
    }

    /// How long `host` is still paused, if it is.
    fn paused_for(&self, host: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.paused.retain(|_, until| *until > now);
        state.paused.get(host).map(|until| *until - now)
    }

    /// Pauses `host` for `wait` (never shortening a longer pause).
    fn pause(&self, host: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = state.paused.entry(host.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Takes the next start slot: the caller waits for it (FIFO).
    fn slot(&self) -> Option<Instant> {
        let interval = self.interval?;
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = state.next.max(now);
        state.next = slot + interval;
        Some(slot)
    }
}

/// `Retry-After` in seconds (an HTTP date, or nothing, gives the default),
/// at most [`MAX_RETRY_AFTER`].
pub fn retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER)
}

/// One HTTP client with a timeout (connect and whole answer), a size cap
/// and a [`Gate`].
pub struct Fetcher {
    http: reqwest::Client,
    max_bytes: usize,
    gate: Gate,
}

impl Fetcher {
    pub fn new(
        timeout: Duration,
        max_bytes: usize,
        rate_per_s: Option<f64>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("thumbnails/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            max_bytes,
            gate: Gate::new(rate_per_s),
        })
    }

    /// GETs `url`. A paused host answers [`FetchError::RateLimited`] at
    /// once, without a request; a 429 pauses the host. `stop` ends the
    /// wait for a slot and the request.
    pub async fn get(&self, url: &str, stop: &CancellationToken) -> Result<Fetched, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::BadUrl(e.to_string()))?;
        // A server is its host and port (the default port when none is given).
        let host = match (parsed.host_str(), parsed.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(FetchError::BadUrl(format!("no host in {url}"))),
        };
        if let Some(wait) = self.gate.paused_for(&host) {
            return Err(FetchError::RateLimited { host, wait });
        }
        if let Some(slot) = self.gate.slot() {
            tokio::select! {
                _ = tokio::time::sleep_until(slot) => {}
                _ = stop.cancelled() => return Err(FetchError::Cancelled),
            }
            // The host may have answered 429 to another fetch meanwhile:
            // a request now would land inside its Retry-After.
            if let Some(wait) = self.gate.paused_for(&host) {
                return Err(FetchError::RateLimited { host, wait });
            }
        }
        tokio::select! {
            r = self.get_capped(parsed, &host) => r,
            _ = stop.cancelled() => Err(FetchError::Cancelled),
        }
    }

    async fn get_capped(&self, url: reqwest::Url, host: &str) -> Result<Fetched, FetchError> {
        let mut response = self.http.get(url).send().await.map_err(FetchError::Http)?;
        let status = response.status().as_u16();
        if status == 429 {
            let wait = retry_after(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
            );
            self.gate.pause(host, wait);
            return Err(FetchError::RateLimited {
                host: host.to_string(),
                wait,
            });
        }
        let too_large = FetchError::TooLarge {
            limit: self.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Http)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering 429 (Retry-After: 60) to every request; counts them.
    async fn counting_429() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/img",
            axum::routing::get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [(axum::http::header::RETRY_AFTER, "60")],
                        "slow down",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/img"), hits)
    }

    #[tokio::test]
    async fn no_request_reaches_a_host_inside_its_retry_after() {
        let (url, hits) = counting_429().await;
        // 20 starts a second: the fetches below wait for their slots while
        // the first one is answered 429.
        let fetcher = std::sync::Arc::new(
            Fetcher::new(Duration::from_secs(5), 1 << 20, Some(20.0)).expect("client"),
        );
        let stop = CancellationToken::new();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (f, url, stop) = (fetcher.clone(), url.clone(), stop.clone());
                tokio::spawn(async move { f.get(&url, &stop).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.expect("task");
            assert!(matches!(r, Err(FetchError::RateLimited { .. })), "{r:?}");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn retry_after_seconds_or_the_default() {
        assert_eq!(retry_after(Some("7")), Duration::from_secs(7));
        assert_eq!(retry_after(Some(" 0 ")), Duration::ZERO);
        assert_eq!(retry_after(Some("999999")), MAX_RETRY_AFTER);
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn the_gate_spaces_starts_and_pauses_hosts() {
        let gate = Gate::new(Some(4.0));
        let slots: Vec<Instant> = (0..3).filter_map(|_| gate.slot()).collect();
        assert_eq!(slots[1] - slots[0], Duration::from_millis(250));
        assert_eq!(slots[2] - slots[0], Duration::from_millis(500));
        assert_eq!(gate.paused_for("a"), None);
        gate.pause("a", Duration::from_secs(10));
        gate.pause("a", Duration::from_secs(1));
        let left = gate.paused_for("a").expect("paused");
        assert!(left > Duration::from_secs(9), "{left:?}");
        assert_eq!(gate.paused_for("b"), None);
        // A pause that has ended is forgotten.
        gate.pause("c", Duration::ZERO);
        assert_eq!(gate.paused_for("c"), None);
        assert!(Gate::new(None).slot().is_none());
        assert!(Gate::new(Some(0.0)).slot().is_none());
    }
}
