//! Thousands of random, truncated and corrupted bodies: no panic, no 5xx.

use reqwest::{Method, StatusCode};
use serde_json::json;
use thumbnails::files::inspect_png;

use super::app::*;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn gen(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    fn gen_range(&mut self, r: std::ops::Range<usize>) -> usize {
        r.start + (self.next() % (r.end - r.start) as u64) as usize
    }
}

fn rng() -> Rng {
    Rng(0x9E37_79B9_7F4A_7C15)
}

#[test]
fn decoder_survives_thousands_of_random_truncated_and_corrupted_inputs() {
    let mut rng = rng();
    let valid = [
        png(64, 64, true),
        png(17, 300, false),
        png_claiming(100_000, 100_000),
    ];
    let mut tried = 0;
    // Random bytes, half of them behind a PNG signature.
    for i in 0..3000 {
        let len = rng.gen_range(0..4096);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if i % 2 == 0 {
            bytes.splice(0..0, *b"\x89PNG\r\n\x1a\n");
        }
        let _ = inspect_png(&bytes);
        tried += 1;
    }
    for good in &valid {
        // Every truncation.
        for cut in 0..good.len() {
            let _ = inspect_png(&good[..cut]);
            tried += 1;
        }
        // Random bit flips and byte overwrites.
        for _ in 0..1000 {
            let mut bytes = good.clone();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
            let _ = inspect_png(&bytes);
            tried += 1;
        }
    }
    assert!(tried > 5000, "{tried}");
}

#[tokio::test]
async fn the_api_answers_random_bodies_with_4xx_and_stays_up() {
    let app = TestApp::spawn().await;
    app.add_obj("ZTF15").await;
    let mut rng = rng();
    let good = png(32, 32, false);
    for i in 0..300 {
        let body: Vec<u8> = match i % 3 {
            // Raw random bytes.
            0 => (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect(),
            // A well-formed request carrying a corrupted PNG.
            1 => {
                let mut png = good.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(8..png.len());
                    png[at] = rng.gen();
                }
                serde_json::to_vec(&json!({"obj_id": "ZTF15", "data": b64(&png), "ttype": "new"}))
                    .expect("json")
            }
            // A truncated request.
            _ => {
                let full = serde_json::to_vec(
                    &json!({"obj_id": "ZTF15", "data": b64(&good), "ttype": "new"}),
                )
                .expect("json");
                full[..rng.gen_range(0..full.len())].to_vec()
            }
        };
        let (status, _, answer) = app
            .send(Method::POST, "/api/thumbnail", Some(UPLOADER), Some(body))
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::OK,
            "{i}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let (status, _) = app.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.upload_png("ZTF15", "new", &good).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
