//! A local stand-in for survey image servers (SDSS, Legacy Survey, PS1,
//! SkyMapper, HLA): each path answers one way, and every request is
//! counted by path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, usize>>>);

pub struct ImageServer {
    pub base: String,
    hits: Hits,
    stop: CancellationToken,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A 200x200 sky-like JPEG: grey, or with a red half.
pub fn jpeg(colour: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(200, 200, |x, y| {
        let v = ((x * 7 + y * 3) % 200) as u8;
        if colour && x < 100 {
            image::Rgb([255, 20, 20])
        } else {
            image::Rgb([v, v, v])
        }
    });
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Jpeg,
    )
}

/// A 256x256 PNG, grey or colour.
pub fn png(colour: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(256, 256, |x, y| {
        let v = ((x + y) % 256) as u8;
        if colour && x < 128 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([v, v, v])
        }
    });
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Png,
    )
}

fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn blank_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(256, 256, image::Rgb([0, 0, 0]));
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Jpeg,
    )
}

fn typed(content_type: &'static str, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn answer(State(hits): State<Hits>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let n = {
        let mut h = hits.0.lock().expect("hits");
        let n = h.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let base = format!(
        "http://{}",
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
    );
    match path.as_str() {
        "/grey.jpg" => typed("image/jpeg", jpeg(false)),
        "/colour.jpg" => typed("image/jpeg", jpeg(true)),
        "/grey.png" => typed("image/png", png(false)),
        "/colour.png" => typed("image/png", png(true)),
        "/blank.jpg" => typed("image/jpeg", blank_jpeg()),
        "/html" => typed("text/html", b"<html><body>Service temporarily unavailable</body></html>".to_vec()),
        // 5 MB, with a Content-Length.
        "/big" => typed("image/jpeg", vec![0xff; 5 * 1024 * 1024]),
        // 5 MB, streamed in chunks without a Content-Length.
        "/big-stream" => {
            let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![0xffu8; 64 * 1024]));
            Response::builder()
                .header(header::CONTENT_TYPE, "image/jpeg")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .expect("response")
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            typed("image/jpeg", jpeg(false))
        }
        "/429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "120")],
            "slow down",
        )
            .into_response(),
        "/500" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/sdss-outside" => (
            StatusCode::NOT_FOUND,
            "<html><body>ERROR: the position is outside the SDSS footprint</body></html>",
        )
            .into_response(),
        // Fails the first time, then a grey image.
        "/flaky.jpg" if n == 1 => (StatusCode::SERVICE_UNAVAILABLE, "later").into_response(),
        "/flaky.jpg" => typed("image/jpeg", jpeg(false)),
        // A grey image the first time, then failures.
        "/then-fail.jpg" if n == 1 => typed("image/jpeg", jpeg(false)),
        "/then-fail.jpg" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        // SIAP: a CSV whose first row names a PNG on this server.
        "/siap" => {
            let csv = format!(
                "unique_image_id,band,get_image\r\n1-1,g,\"{base}/colour.png?{query}\"\r\n1-2,r,{base}/grey.png\r\n"
            );
            typed("text/csv", csv.into_bytes())
        }
        "/siap-empty" => typed("text/csv", b"unique_image_id,band,get_image\r\n".to_vec()),
        "/siap-error" => typed(
            "text/xml",
            b"<?xml version=\"1.0\"?><VOTABLE><INFO name=\"QUERY_STATUS\" value=\"ERROR\"/></VOTABLE>".to_vec(),
        ),
        _ => (StatusCode::NOT_FOUND, "no such path").into_response(),
    }
}

impl ImageServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Hits::default();
        let stop = CancellationToken::new();
        let app = Router::new().fallback(answer).with_state(hits.clone());
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Self {
            base: format!("http://{addr}"),
            hits,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests so far for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .0
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests so far, all paths.
    pub fn total_hits(&self) -> usize {
        self.hits.0.lock().expect("hits").values().sum()
    }
}
