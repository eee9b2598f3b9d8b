//! Sidecar test harness: one app per test, on port 0, with its own
//! database, exchange, storage root and tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use thumbnails::config::{Config, Scope, TokenConfig};
use thumbnails::sidecar::{serve, ServeOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestBus, TestDb};

pub const UPLOADER: &str = "uploader-token-0001";
pub const MANAGER: &str = "manager-token-0001";
pub const READER: &str = "reader-token-0001";
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub bus: TestBus,
    pub storage: tempfile::TempDir,
    pub stored_queue: String,
    pub config: Config,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

pub fn tokens() -> Vec<TokenConfig> {
    vec![
        TokenConfig {
            token: UPLOADER.into(),
            scopes: vec![Scope::Upload],
        },
        TokenConfig {
            token: MANAGER.into(),
            scopes: vec![Scope::Manage],
        },
        TokenConfig {
            token: READER.into(),
            scopes: vec![],
        },
    ]
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// `tweak` edits the config (tokens, limits, storage root) before start.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_with_options(
            tweak,
            ServeOptions {
                outbox_interval: Duration::from_millis(200),
                shutdown_deadline: Duration::from_secs(5),
            },
        )
        .await
    }

    pub async fn spawn_with_options(
        tweak: impl FnOnce(&mut Config),
        options: ServeOptions,
    ) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            thumbnails::telemetry::init(thumbnails::config::LogFormat::Text);
        }
        let (db, bus) = (TestDb::new().await, TestBus::new().await);
        let storage = tempfile::tempdir().expect("tempdir");
        let mut config = bus.config(&db, "");
        config.storage.root = storage.path().to_path_buf();
        config.http.tokens = tokens();
        tweak(&mut config);
        let stored_queue = bus.listen_stored().await;

        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let (c, conn, s) = (config.clone(), db.db.clone(), shutdown.clone());
        let config = config.clone();
        let task = tokio::spawn(async move { serve(listener, &c, conn, s, options).await });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let app = Self {
            base: format!("http://{addr}"),
            client,
            db,
            bus,
            storage,
            stored_queue,
            config,
            shutdown,
            task,
        };
        // Connections wait in the backlog while the server sets up, so one
        // answered request means it is up (and its start-up checks passed).
        let (status, _) = app.json(reqwest::Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK, "sidecar did not start");
        app
    }

    /// Stops the server (it must exit cleanly) and removes the exchange.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("sidecar stops in time")
            .expect("sidecar task joins")
            .expect("sidecar exits cleanly");
        self.bus.delete().await;
    }

    pub async fn add_obj(&self, id: &str) {
        self.db.add_obj(id).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns the status, headers and raw body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("token {t}"));
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body").to_vec();
        (status, headers, bytes)
    }

    /// Writes `request` as is on a fresh connection and returns the whole
    /// answer (status line, headers, body) as text.
    pub async fn raw(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before the whole body is written.
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends JSON and parses a JSON answer.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| serde_json::to_vec(b).expect("json"));
        let (status, _, bytes) = self.send(method, path, token, body).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// `GET`, `PUT` or `DELETE /api/thumbnail/{id}`.
    pub async fn thumbnail(
        &self,
        method: reqwest::Method,
        id: impl std::fmt::Display,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.json(method, &format!("/api/thumbnail/{id}"), token, body)
            .await
    }

    pub async fn upload(&self, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.json(reqwest::Method::POST, "/api/thumbnail", token, Some(body))
            .await
    }

    pub async fn upload_png(&self, obj_id: &str, ttype: &str, png: &[u8]) -> (StatusCode, Value) {
        self.upload(
            Some(UPLOADER),
            &serde_json::json!({"obj_id": obj_id, "data": b64(png), "ttype": ttype}),
        )
        .await
    }

    /// Every file under the storage root.
    pub fn files(&self) -> Vec<PathBuf> {
        files_under(self.storage.path())
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .scalar_i64(&format!("SELECT count(*) FROM {table}"))
            .await
    }

    /// Polls the listener queue until `n` thumbnail.stored events arrived.
    pub async fn events(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got: Vec<Value> = Vec::new();
        loop {
            for (body, _) in self.bus.drain(&self.stored_queue).await {
                got.push(serde_json::from_slice(&body).expect("event json"));
            }
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} thumbnail.stored events, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that nothing was stored: no file, no row, no pending event.
    pub async fn assert_nothing_stored(&self, what: &str) {
        assert_eq!(self.files(), Vec::<PathBuf>::new(), "{what}: files");
        assert_eq!(self.count("thumbnails").await, 0, "{what}: rows");
        assert_eq!(self.count("thumbnail_outbox").await, 0, "{what}: outbox");
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `w`x`h` PNG: grey gradient, or red and blue halves when `colour`.
pub fn png(w: u32, h: u32, colour: bool) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        if colour {
            if x < w / 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        } else {
            let v = ((x + y) % 256) as u8;
            image::Rgb([v, v, v])
        }
    });
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Png,
    )
}

pub fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A valid-looking PNG whose header claims `w`x`h` (a decompression bomb
/// when large), followed by a little compressed data.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a few zero bytes (what a bomb would repeat).
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// The `message` of an error answer.
pub fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}
