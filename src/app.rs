//! Wires the subcommands from config: each opens what it needs and runs
//! until done or until the shutdown signal.

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::cli::Command;
use crate::config::Config;
use crate::{feed, ops, remote, shutdown, sidecar, store, worker};

pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    let stop = shutdown::on_signal();
    match command {
        Command::Migrate => {
            store::ensure_database(&config.database.url).await?;
            let db = store::connect(&config.database.url, 2).await?;
            store::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Worker => {
            let db = connect(&config).await?;
            // The worker alone has no API, but its health and counters are
            // served on http.listen (free, since no sidecar runs here).
            let operations = match tokio::net::TcpListener::bind(&config.http.listen).await {
                Ok(listener) => Some(tokio::spawn(sidecar::serve_operations(
                    listener,
                    stop.clone(),
                ))),
                Err(e) => {
                    tracing::warn!(listen = %config.http.listen, error = %e, "cannot listen on http.listen: /metrics and /healthz are not served");
                    None
                }
            };
            let result = worker::run(&config, db, stop.clone())
                .await
                .context("worker");
            stop.cancel();
            if let Some(task) = operations {
                let _ = task.await;
            }
            result
        }
        Command::Feed => {
            let db = connect(&config).await?;
            feed::run(&config, db, stop).await.context("feed")
        }
        Command::Sidecar => {
            let db = connect(&config).await?;
            sidecar::run(&config, db, stop).await.context("sidecar")
        }
        Command::Run => {
            store::ensure_database(&config.database.url).await?;
            let db = connect(&config).await?;
            store::migrate(&db).await?;
            // Whichever ends first (an error, or shutdown) stops the others.
            let (w, s, f, g) = tokio::join!(
                async {
                    let r = worker::run(&config, db.clone(), stop.clone()).await;
                    stop.cancel();
                    r
                },
                async {
                    let r = sidecar::run(&config, db.clone(), stop.clone()).await;
                    stop.cancel();
                    r
                },
                async {
                    // With feed.enabled false it returns at once: not a stop.
                    let r = feed::run(&config, db.clone(), stop.clone()).await;
                    if r.is_err() {
                        stop.cancel();
                    }
                    r
                },
                async {
                    if !config.grayscale.enabled {
                        return Ok(());
                    }
                    let r =
                        remote::grayscale::run(&config.grayscale, db.clone(), stop.clone()).await;
                    stop.cancel();
                    r
                },
            );
            w.context("worker")?;
            s.context("sidecar")?;
            f.context("feed")?;
            g.context("grayscale pass")
        }
        Command::Replay(args) => ops::replay::run(&config, args, stop).await,
        Command::Resurvey(args) => ops::resurvey::run(&config, args, stop).await,
        Command::Files(args) => ops::files::run(&config, args, stop).await,
        Command::Cutouts(args) => ops::cutouts::run(&config, args).await,
        Command::Healthcheck => healthcheck(&config).await,
    }
}

/// GETs `/healthz` on the configured listen address (0.0.0.0 -> 127.0.0.1).
async fn healthcheck(config: &Config) -> anyhow::Result<()> {
    let listen = config.http.listen.replace("0.0.0.0", "127.0.0.1");
    let url = format!("http://{listen}/healthz");
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(())
}

async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    Ok(store::connect(&config.database.url, config.database.max_connections).await?)
}
