//! The pages in a real browser: Debian's headless Chromium driven through
//! chromedriver (started here on a free port) with `fantoccini`. Every
//! `<img>` must have loaded (`naturalWidth > 0`): the service's own files,
//! and SDSS/LS rows pointed at the scene's local image stand-in (the real
//! surveys are out of reach here). Screenshots go to the test target
//! folder, and to `$THUMBNAILS_SCREENSHOTS` when set (the README's come
//! from `THUMBNAILS_SCREENSHOTS=docs/preview`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::process::Child;

use super::scene::*;
use crate::helpers::{eventually, free_port};
use thumbnails::sidecar::preview::view::encode_segment;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(30);

/// A browser session on a chromedriver of its own; both end with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's {package} \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("chromedriver to answer", WAIT, || async {
            let r = http.get(format!("{url}/status")).send().await.ok()?;
            let v: Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        // Without the background-networking flags Chromium waits on the
        // closed network.
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session through chromedriver");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until every image finished loading; returns `[src, width]`.
    pub async fn images_loaded(&self) -> Vec<(String, u64)> {
        let script = "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);";
        eventually("every image to finish loading", WAIT, || async {
            let v = self.js(script, vec![]).await;
            let all = v.as_array()?.clone();
            all.iter().all(|i| i[1] == true).then(|| {
                all.iter()
                    .map(|i| {
                        (
                            i[0].as_str().unwrap_or("").to_string(),
                            i[2].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
        })
        .await
    }

    /// `type/survey` of each tile, in page order.
    pub async fn tiles(&self, within: &str) -> Vec<String> {
        let script = "return [...document.querySelectorAll(arguments[0] + ' figure.tile')].map(f => f.dataset.type + '/' + f.dataset.survey);";
        let v = self.js(script, vec![json!(within)]).await;
        serde_json::from_value(v).expect("a list of strings")
    }

    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR"))];
        if let Some(d) = std::env::var_os("THUMBNAILS_SCREENSHOTS") {
            dirs.push(PathBuf::from(d));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).expect("screenshot folder");
            std::fs::write(dir.join(name), &png).expect("write the screenshot");
        }
    }

    pub async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

fn assert_all_loaded(page: &str, images: &[(String, u64)], at_least: usize) {
    assert!(images.len() >= at_least, "{page}: {images:?}");
    let broken: Vec<_> = images.iter().filter(|(_, w)| *w == 0).collect();
    assert!(
        broken.is_empty(),
        "{page}: images that did not load: {broken:?}"
    );
}

#[tokio::test]
async fn both_pages_in_chromium_load_every_image_in_skyportal_order_and_escape_ids() {
    let scene = Scene::build(false).await;
    let base = scene.app.base.clone();
    let b = Browser::start().await;

    // The token given once in the URL becomes a cookie (and leaves the URL).
    b.client
        .goto(&format!("{base}/preview?token={VIEWER}"))
        .await
        .expect("list page");
    let url = b.client.current_url().await.expect("url");
    assert_eq!(url.as_str(), format!("{base}/preview"));
    let images = b.images_loaded().await;
    // A: 3 stamps, upload, sdss, ls; B: sdss, ls; LSST 3; Avro alert 3; markup obj 1.
    assert_all_loaded("list", &images, 15);
    let placeholders = b
        .js("return [...document.querySelectorAll('[data-placeholder]')].map(e => e.dataset.placeholder).sort();", vec![])
        .await;
    assert_eq!(
        placeholders,
        json!(["currently_unavailable", "outside_survey"])
    );
    let status = b
        .js("return [document.getElementById('feed-backlog').innerText, [...document.querySelectorAll('.dead-queue')].map(d => d.innerText)];", vec![])
        .await;
    assert!(
        status[0].as_str().is_some_and(|s| s.contains("1 row")),
        "{status}"
    );
    let dead = status[1].as_array().expect("queues");
    assert_eq!(dead.len(), 2, "{status}");
    for d in dead {
        let d = d.as_str().unwrap_or("");
        assert!(
            d.contains("1 message") && d.contains("newest 1"),
            "{status}"
        );
    }
    // Read, not taken: the dead letters are still there.
    for q in [
        &scene.app.config.amqp.queue,
        &scene.app.config.amqp.cutouts_queue,
    ] {
        let dead = format!("{q}.dead");
        eventually("the dead letter requeued", WAIT, || async {
            (scene.app.bus.queue_len(&dead).await == 1).then_some(())
        })
        .await;
    }
    let markup_listed = b
        .js("return [...document.querySelectorAll('section.obj')].some(s => s.dataset.obj === arguments[0] && s.querySelector('h3').textContent === arguments[0]);", vec![json!(SCRIPT_ID)])
        .await;
    assert_eq!(markup_listed, json!(true));
    b.screenshot("list.png").await;

    // The object page: SkyPortal's order, placeholders, the FITS links.
    b.client
        .goto(&format!("{base}/preview/objs/{OBJ_A}"))
        .await
        .expect("object page");
    assert_all_loaded(OBJ_A, &b.images_loaded().await, 6);
    assert_eq!(
        b.tiles("main").await,
        ["new/", "new/ZTF", "ref/ZTF", "sub/ZTF", "sdss/", "ls/", "ps1/"]
    );
    let ps1 = b
        .js("return document.querySelector('figure[data-type=ps1] [data-placeholder]').dataset.placeholder;", vec![])
        .await;
    assert_eq!(ps1, json!("outside_survey"));
    let fits: Vec<String> = serde_json::from_value(
        b.js("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href')).filter(h => h.endsWith('.fits.gz'));", vec![])
            .await,
    )
    .expect("hrefs");
    assert_eq!(fits.len(), 3, "{fits:?}");
    let (status, _, _) = scene
        .app
        .send(reqwest::Method::GET, &fits[0], None, None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{}", fits[0]);
    b.screenshot("object.png").await;

    b.client
        .goto(&format!("{base}/preview/objs/{}", scene.lsst_obj))
        .await
        .expect("LSST page");
    assert_all_loaded("LSST", &b.images_loaded().await, 3);
    assert_eq!(b.tiles("main").await, ["new/LSST", "ref/LSST", "sub/LSST"]);
    b.client
        .goto(&format!("{base}/preview/objs/{OBJ_B}"))
        .await
        .expect("B page");
    assert_all_loaded(OBJ_B, &b.images_loaded().await, 2);
    assert_eq!(b.tiles("main").await, ["sdss/", "ls/", "ps1/"]);

    // Markup in an id is text: no script element, no alert.
    b.client
        .goto(&format!(
            "{base}/preview/objs/{}",
            encode_segment(SCRIPT_ID)
        ))
        .await
        .expect("markup page");
    let shown = b
        .js("return [document.getElementById('obj-id').textContent, document.scripts.length, document.title];", vec![])
        .await;
    assert_eq!(shown[0], json!(SCRIPT_ID));
    assert_eq!(shown[1], json!(0));
    assert!(b.client.get_alert_text().await.is_err(), "an alert opened");

    b.client
        .goto(&format!("{base}/preview/objs/no-such-object"))
        .await
        .expect("404 page");
    let h1 = b
        .js("return document.querySelector('h1').textContent;", vec![])
        .await;
    assert_eq!(h1, json!("404 Not Found"));

    b.stop().await;
    scene.stop().await;
}
