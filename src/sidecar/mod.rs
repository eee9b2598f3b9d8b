//! The HTTP sidecar: custom thumbnail uploads, static files, health.
//!
//! - [`upload`]: `POST /api/thumbnail` (validate, stage, commit, publish).
//! - [`thumbnails`]: read, edit, delete and list rows.
//! - [`static_files`]: `GET /static/thumbnails/...`.
//! - [`meta`]: health, readiness, metrics, OpenAPI.
//! - [`preview`]: the HTML pages `/preview` and `/preview/objs/{obj_id}`.
//! - [`auth`], [`error`]: tokens and the one error-to-HTTP mapping.
//!
//! The upload committer and the event outbox live in [`crate::store`], the
//! broker link in [`crate::bus`], the PNG checks in [`crate::files`]: this
//! module is HTTP only.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod cutouts;
pub mod error;
pub mod meta;
pub mod metrics;
pub mod on_demand;
pub mod preview;
pub mod static_files;
pub mod thumbnails;
pub mod upload;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bus::BusLink;
use crate::config::Config;
use crate::files::FileStore;
use crate::store::{committer, outbox};
use auth::Tokens;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub files: FileStore,
    pub bus: Arc<BusLink>,
    /// Deletes published outbox rows, batching concurrent requests.
    pub deleter: outbox::Deleter,
    /// Commits uploads, many to a transaction.
    pub committer: committer::Committer,
    /// Uploads checked and staged at once on the blocking pool: enough to
    /// keep every core busy while others wait for their fsync, few enough
    /// that 64 clients do not mean 64 threads switching in and out.
    pub blocking_slots: Arc<tokio::sync::Semaphore>,
    pub tokens: Arc<Tokens>,
    /// The OpenAPI document, serialised once the router is built.
    pub openapi: Arc<OnceLock<String>>,
    /// Resolves the on-demand surveys (sm, hst, chandra, jwst).
    pub on_demand: Arc<crate::remote::on_demand::OnDemand>,
    /// How alert cutouts (FITS) are drawn.
    pub cutouts: Arc<crate::cutouts::CutoutSettings>,
    /// Reads alert packets (`POST /api/alerts`), asking the schema registry.
    pub alerts: Arc<crate::remote::schema_registry::AlertReader>,
    /// The worker's queues of this config (`amqp.queue`,
    /// `amqp.cutouts_queue`): `/readyz` reports a refusal of either.
    pub queues: Arc<[String]>,
    /// The preview pages' settings and dead-letter reader.
    pub preview: Arc<preview::Preview>,
}

/// Knobs tests turn; `run` uses the defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often leftover outbox events are republished.
    pub outbox_interval: Duration,
    /// How long in-flight requests may take after shutdown (axum#1070).
    pub shutdown_deadline: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            outbox_interval: Duration::from_secs(5),
            shutdown_deadline: Duration::from_secs(20),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "thumbnails sidecar", description = "SkyPortal-compatible thumbnail upload API and static file server."),
    paths(static_files::serve_file),
    modifiers(&TokenScheme),
    tags(
        (name = "thumbnails", description = "Thumbnail rows and uploads"),
        (name = "files", description = "Stored files"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "preview", description = "HTML pages for people (scope view)"),
    )
)]
struct ApiDoc;

struct TokenScheme;

impl utoipa::Modify for TokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`token <T>`, a token from http.tokens (scopes: upload, manage, view)",
            ))),
        );
    }
}

/// The application: every route, documented, with its layers.
pub fn router(state: AppState, max_body_bytes: usize) -> axum::Router {
    // axum's own limit (DefaultBodyLimit, 2 MB) and tower-http's are
    // separate: set both to http.max_body_bytes on the upload routes.
    let limited = |route: axum::routing::MethodRouter<AppState>| {
        route
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(max_body_bytes))
            .layer(RequestBodyLimitLayer::new(max_body_bytes))
            .layer(axum::middleware::map_response(move |r| {
                json_too_large(r, max_body_bytes)
            }))
    };
    let (schemas, paths, upload_route) = routes!(upload::upload);
    let (c_schemas, c_paths, cutouts_route) = routes!(cutouts::post_cutouts);
    let (a_schemas, a_paths, alerts_route) = routes!(alerts::post_alerts);
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes((schemas, paths, limited(upload_route)))
        .routes((c_schemas, c_paths, limited(cutouts_route)))
        .routes((a_schemas, a_paths, limited(alerts_route)))
        .routes(routes!(
            thumbnails::get_thumbnail,
            thumbnails::put_thumbnail,
            thumbnails::delete_thumbnail
        ))
        .routes(routes!(thumbnails::list_for_obj))
        .routes(routes!(on_demand::make_thumbnail))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(preview::list_page))
        .routes(routes!(preview::obj_page))
        .route("/static/thumbnails/{*path}", get(static_files::serve_file))
        .split_for_parts();
    match doc.to_json() {
        Ok(json) => {
            let _ = state.openapi.set(json);
        }
        Err(e) => tracing::error!(error = %e, "cannot serialise the OpenAPI document"),
    }
    router
        .fallback(|| async { error::ApiError::NotFound("Not found".into()) })
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// A request's span names its path, never its query: a browser may carry
/// its preview token there (`/preview?token=`), and tokens are never logged.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        version = ?req.version(),
    )
}

/// tower-http answers 413 in plain text; clients get the usual JSON.
async fn json_too_large(
    response: axum::response::Response,
    limit: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return error::ApiError::TooLarge(format!(
            "Thumbnail failed to post: request body larger than {limit} bytes (http.max_body_bytes)"
        ))
        .into_response();
    }
    response
}

impl AppState {
    /// Opens what the handlers need: the broker link (checked now, so a
    /// wrong address fails at start) and the file store.
    pub async fn build(config: &Config, db: DatabaseConnection) -> anyhow::Result<Self> {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(&format!("SELECT 1 FROM {} LIMIT 0", outbox::TABLE))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "table {} is missing: run `thumbnails migrate` first",
                    outbox::TABLE
                )
            })?;
        let bus = BusLink::connect(
            &config.amqp,
            &format!("thumbnails-sidecar {}", config.amqp.exchange),
        )
        .await
        .context("sidecar")?;
        Ok(Self {
            deleter: outbox::Deleter::spawn(db.clone()),
            committer: committer::Committer::spawn(db.clone()),
            blocking_slots: Arc::new(tokio::sync::Semaphore::new(
                4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            db,
            files: FileStore::from_config(&config.storage).context("storage")?,
            bus: Arc::new(bus),
            tokens: Arc::new(Tokens::new(&config.http.tokens)),
            openapi: Arc::new(OnceLock::new()),
            on_demand: Arc::new(
                crate::remote::on_demand::OnDemand::new(&config.on_demand).context("on_demand")?,
            ),
            cutouts: Arc::new(config.cutouts.clone()),
            alerts: Arc::new(
                crate::remote::schema_registry::AlertReader::new(&config.cutouts)
                    .context("cutouts.schema_registry_url")?,
            ),
            queues: Arc::from(vec![
                config.amqp.queue.clone(),
                config.amqp.cutouts_queue.clone(),
            ]),
            preview: Arc::new(preview::Preview {
                open: config.http.preview_open,
                dead_letters: preview::dead_letters::DeadLetters::new(&config.amqp),
            }),
        })
    }
}

/// Serves on `listener` until `shutdown`; in-flight requests get
/// `options.shutdown_deadline` to finish.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    db: DatabaseConnection,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let state = AppState::build(config, db).await?;
    let _ = crate::telemetry::metrics::handle();
    if state.tokens.is_empty() {
        tracing::warn!("http.tokens is empty: the API refuses every upload, edit, delete and read until tokens are configured");
    }
    // Not fatal (files may be served from a mount that appears later), but
    // said at once rather than at the first upload.
    if state.files.folder().is_some() {
        let uploads = state.files.uploads_dir();
        if let Err(e) = tokio::fs::create_dir_all(&uploads).await {
            tracing::warn!(path = %uploads.display(), error = %e, "storage.root is not writable: uploads will fail until it is");
        }
    }
    let app = router(state.clone(), config.http.max_body_bytes);
    let addr = listener
        .local_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    tracing::info!(address = %addr, storage = %state.files.describe(), "sidecar listening");

    let relay = tokio::spawn(outbox::relay_loop(
        state.db.clone(),
        state.bus.clone(),
        options.outbox_interval,
        shutdown.clone(),
    ));
    let upkeep = tokio::spawn(crate::telemetry::metrics::upkeep_loop(shutdown.clone()));
    let gauges = tokio::spawn(preview::gauges_loop(state.clone(), shutdown.clone()));
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });
    let result = tokio::select! {
        r = &mut server => r,
        _ = shutdown.cancelled() => match tokio::time::timeout(options.shutdown_deadline, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(deadline_s = options.shutdown_deadline.as_secs_f64(), "requests still running at the shutdown deadline; closing them");
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    // Whatever ended the server ends the relay too.
    relay.abort();
    upkeep.abort();
    gauges.abort();
    let _ = relay.await;
    let _ = gauges.await;
    state.preview.dead_letters.close().await;
    state.bus.close().await;
    result.context("sidecar task")?.context("HTTP server")?;
    tracing::info!("sidecar stopped");
    Ok(())
}

/// `/healthz` and `/metrics` alone, for `thumbnails worker` (which has no
/// API): its counters are scraped like the sidecar's.
pub async fn serve_operations(
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = crate::telemetry::metrics::handle();
    let app = axum::Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics));
    let addr = listener
        .local_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    tracing::info!(address = %addr, "serving /healthz and /metrics");
    let upkeep = tokio::spawn(crate::telemetry::metrics::upkeep_loop(shutdown.clone()));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    upkeep.abort();
    result.context("operations HTTP server")
}

/// Serves `config.http.listen` until `shutdown`.
pub async fn run(
    config: &Config,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    serve(listener, config, db, shutdown, ServeOptions::default()).await
}
