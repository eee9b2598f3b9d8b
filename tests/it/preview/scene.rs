//! A small real deployment with something of everything to look at: a
//! sidecar and a worker on their own database and exchange, SDSS and LS
//! templates pointing at a local image stand-in (there is no internet
//! here), the PS1 stand-in, and these objects:
//!
//! - `ZTF-pv-a` (ra 2.5): a worker event (sdss, ls, ps1 `outside_survey`),
//!   ZTF stamps posted to the API, a PNG upload of type `new`;
//! - `ZTF-pv-b` (ra 3.5): a worker event whose PS1 lookup fails
//!   (`currently_unavailable`);
//! - the first LSST fixture packet, posted to `/api/alerts`;
//! - the ZTF Avro fixture alert, published to the worker's alert queue,
//!   and a JSON alert for `ZTF-pv-c` whose template cutout is broken;
//! - [`SCRIPT_ID`], an id with markup in it, with an SDSS row;
//!
//! plus one bad event and one bad alert (dead letters) and one row in the
//! feed's outbox.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use thumbnails::config::{Scope, TokenConfig};
use tokio_util::sync::CancellationToken;

use crate::cutouts::{cutouts_json, fixture, publish_alert, AVRO_ALERT};
use crate::helpers::{event, eventually, Ps1StandIn, RunningWorker};
use crate::lsst::{lsst_fixture, PACKETS};
use crate::sidecar::app::{png, TestApp, UPLOADER};

pub const VIEWER: &str = "viewer-token-0001";
pub const SCRIPT_ID: &str = "<script>alert(\"pwned\")</script>&amp;";
pub const OBJ_A: &str = "ZTF-pv-a";
pub const OBJ_B: &str = "ZTF-pv-b";
pub const OBJ_C: &str = "ZTF-pv-c";
pub const ZTF_ALERT_OBJ: &str = "ZTF18aaxjdyr";
const WAIT: Duration = Duration::from_secs(60);

pub struct Scene {
    pub app: TestApp,
    pub worker: RunningWorker,
    pub lsst_obj: &'static str,
    _ps1: Ps1StandIn,
    images: CancellationToken,
}

/// Serves a 200 x 200 colour PNG at any path: the stand-in for SDSS and
/// the Legacy Survey. Returns its base URL.
async fn image_stand_in(stop: CancellationToken) -> String {
    let body = png(200, 200, true);
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, "image/png")], body) }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind the image stand-in");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    format!("http://{addr}")
}

impl Scene {
    pub async fn build(open: bool) -> Self {
        let images = CancellationToken::new();
        let image_url = image_stand_in(images.clone()).await;
        let ps1 = Ps1StandIn::start().await;
        let app = TestApp::spawn_with(|c| {
            c.http.tokens.push(TokenConfig {
                token: VIEWER.into(),
                scopes: vec![Scope::View],
            });
            c.http.preview_open = open;
            c.surveys.sdss.template = format!("{image_url}/sdss.png?ra={{ra}}&dec={{dec}}");
            c.surveys.ls.template = format!("{image_url}/ls.png?ra={{ra}}&dec={{dec}}");
            c.surveys.ps1.lookup_url = ps1.url.clone();
            // B's failed lookup is retried (and fails again) at once.
            c.surveys.ps1.retry_first_s = 0.2;
            c.cutouts.keep_fits = true;
        })
        .await;
        let worker = RunningWorker::start(&app.config).await;
        let scene = Self {
            app,
            worker,
            lsst_obj: PACKETS[0].1,
            _ps1: ps1,
            images,
        };
        scene.fill(&image_url).await;
        scene
    }

    async fn fill(&self, image_url: &str) {
        let app = &self.app;
        app.bus.publish(&event(OBJ_A, 2.5, 20.0)).await;
        app.bus.publish(&event(OBJ_B, 3.5, 20.0)).await;
        app.bus.publish(b"{ not json").await;
        for obj in [OBJ_A, OBJ_B] {
            let sql = format!("SELECT count(*) FROM thumbnails WHERE obj_id = '{obj}'");
            eventually(&format!("the worker's rows of {obj}"), WAIT, || async {
                (app.db.scalar_i64(&sql).await == 3).then_some(())
            })
            .await;
        }
        let path = format!("/api/objs/{OBJ_A}/cutouts");
        let (status, reply) = app
            .json(
                Method::POST,
                &path,
                Some(UPLOADER),
                Some(&cutouts_json(OBJ_A)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "ZTF cutouts: {reply}");
        let (status, reply) = app.upload_png(OBJ_A, "new", &png(64, 64, false)).await;
        assert_eq!(status, StatusCode::OK, "upload: {reply}");
        let (status, _, body) = app
            .send(
                Method::POST,
                "/api/alerts",
                Some(UPLOADER),
                Some(lsst_fixture(PACKETS[0].0)),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "LSST: {}",
            String::from_utf8_lossy(&body)
        );
        publish_alert(&app.bus, &fixture(AVRO_ALERT), Some("avro/binary")).await;
        publish_alert(&app.bus, b"neither Avro nor JSON", None).await;
        // Two of three cutouts drawn: a cutout failure with a reason.
        let mut partial = cutouts_json(OBJ_C);
        partial["cutoutTemplate"] = serde_json::json!("%%% not base64");
        let partial = serde_json::to_vec(&partial).expect("json");
        publish_alert(&app.bus, &partial, None).await;
        for (obj, n) in [(ZTF_ALERT_OBJ, 3), (OBJ_C, 2)] {
            let sql = format!(
                "SELECT count(*) FROM thumbnails WHERE obj_id = '{obj}' AND survey = 'ZTF'"
            );
            eventually(&format!("the worker's stamps of {obj}"), WAIT, || async {
                (app.db.scalar_i64(&sql).await == n).then_some(())
            })
            .await;
        }
        app.add_obj(SCRIPT_ID).await;
        let url = format!("{image_url}/sdss.png?markup");
        app.db
            .db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "INSERT INTO thumbnails (created_at, modified, type, public_url, origin, obj_id)
                 VALUES (now() at time zone 'utc', now() at time zone 'utc', 'sdss', $1, 'survey', $2)",
                [url.into(), SCRIPT_ID.into()],
            ))
            .await
            .expect("insert the markup object's row");
        app.db
            .scalar_i64(
                "WITH i AS (INSERT INTO thumbnails_feed_outbox (obj_ids, kind)
                   VALUES (ARRAY['waiting'], 'insert') RETURNING 1) SELECT count(*) FROM i",
            )
            .await;
        for queue in [
            format!("{}.dead", app.config.amqp.queue),
            format!("{}.dead", app.config.amqp.cutouts_queue),
        ] {
            eventually(&format!("a dead letter in {queue}"), WAIT, || async {
                (app.bus.queue_len(&queue).await == 1).then_some(())
            })
            .await;
        }
    }

    pub async fn stop(self) {
        self.images.cancel();
        self.worker.stop().await;
        self.app.stop().await;
    }
}

use sea_orm::ConnectionTrait;
