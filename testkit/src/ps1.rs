//! A local stand-in for the PS1 cutout service, used by the tests and the
//! benchmark (there is no internet here, and tests must not depend on it).
//!
//! In [`Ps1Mode::ByRa`] the answer depends on the integer part of `ra` in
//! `pos=RA+DEC`: `2` -> "No PS1 3PI images were found", `3` -> HTTP 500,
//! `4` -> an answer slower than any sane timeout (30 s); `5` -> an image
//! link after 2 s (a slow lookup that succeeds); anything else -> an image
//! link. In [`Ps1Mode::Image`] every answer is an image link after a
//! fixed delay (the benchmark's slow PS1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ps1Mode {
    /// Image, no images, error or too slow, chosen by `ra` (for tests).
    ByRa,
    /// Always an image link, after this delay.
    Image { delay: Duration },
    /// HTTP 500 for the first `failures` lookups of each position, then an
    /// image link.
    Flaky { failures: u32 },
}

/// What the stand-in saw: lookups in flight now and at most.
#[derive(Debug, Default)]
pub struct Ps1Stats {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: AtomicUsize,
    seen: Mutex<HashMap<String, u32>>,
}

#[derive(Clone)]
struct StandIn {
    mode: Ps1Mode,
    stats: Arc<Ps1Stats>,
}

/// Counts a lookup in flight for as long as it lives.
struct InFlight(Arc<Ps1Stats>);

impl InFlight {
    fn new(stats: &Arc<Ps1Stats>) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        stats.requests.fetch_add(1, Ordering::SeqCst);
        Self(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
struct Params {
    pos: Option<String>,
}

/// The image `src` the stand-in answers with for a position.
pub fn image_src(pos: &str) -> String {
    format!(
        "//ps1images.stsci.edu/cgi-bin/fitscut.cgi?red=/rings.v3.skycell.{}.stk.i.fits&size=240",
        pos.replace(' ', "_")
    )
}

async fn lookup(State(s): State<StandIn>, Query(p): Query<Params>) -> Response {
    let _counted = InFlight::new(&s.stats);
    let mode = s.mode;
    let pos = p.pos.unwrap_or_default();
    if let Ps1Mode::Flaky { failures } = mode {
        let Ok(mut seen) = s.stats.seen.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned").into_response();
        };
        let n = seen.entry(pos.clone()).or_insert(0);
        *n += 1;
        if *n <= failures {
            return (StatusCode::INTERNAL_SERVER_ERROR, "try later").into_response();
        }
    }
    let delay = match mode {
        Ps1Mode::Image { delay } => delay,
        Ps1Mode::ByRa | Ps1Mode::Flaky { .. } => Duration::ZERO,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let ra_int = pos
        .split([' ', '+'])
        .next()
        .and_then(|ra| ra.parse::<f64>().ok())
        .map(|ra| ra.trunc() as i64);
    match (mode, ra_int) {
        (Ps1Mode::ByRa, Some(2)) => {
            Html("<html><body><p>No PS1 3PI images were found at this position</p></body></html>")
                .into_response()
        }
        (Ps1Mode::ByRa, Some(3)) => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        (Ps1Mode::ByRa, Some(4)) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Html("too late").into_response()
        }
        (Ps1Mode::ByRa, Some(5)) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            image_page(&pos)
        }
        _ => image_page(&pos),
    }
}

fn image_page(pos: &str) -> Response {
    Html(format!(
        "<html><table><tr><td><img src=\"{}\" alt=\"color\"></td>\n<td><img src=\"//ps1images.stsci.edu/other.jpg\"></td></tr></table></html>",
        image_src(pos)
    ))
    .into_response()
}

/// Serves the stand-in on 127.0.0.1 (port 0 = any) until `stop`; returns the
/// lookup URL to configure as `surveys.ps1.lookup_url`.
pub async fn serve_ps1(mode: Ps1Mode, stop: CancellationToken) -> std::io::Result<String> {
    Ok(serve_ps1_counted(mode, stop).await?.0)
}

/// [`serve_ps1`], with what the stand-in sees.
pub async fn serve_ps1_counted(
    mode: Ps1Mode,
    stop: CancellationToken,
) -> std::io::Result<(String, Arc<Ps1Stats>)> {
    let stats = Arc::new(Ps1Stats::default());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/cgi-bin/ps1cutouts", get(lookup))
        .with_state(StandIn {
            mode,
            stats: stats.clone(),
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok((format!("http://{addr}/cgi-bin/ps1cutouts"), stats))
}
