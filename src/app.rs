//! Wires the subcommands from config: each opens what it needs and runs
//! until done or until the shutdown signal.

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::cli::Command;
use crate::config::Config;
use crate::{ops, shutdown, sidecar, store, worker};

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
            worker::run(&config, db, stop).await.context("worker")
        }
        Command::Sidecar => {
            let db = connect(&config).await?;
            sidecar::run(&config, db, stop).await.context("sidecar")
        }
        Command::Run => {
            store::ensure_database(&config.database.url).await?;
            let db = connect(&config).await?;
            store::migrate(&db).await?;
            // Whichever ends first (an error, or shutdown) stops the other.
            let (w, s) = tokio::join!(
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
            );
            w.context("worker")?;
            s.context("sidecar")
        }
        Command::Replay(args) => ops::replay::run(&config, args, stop).await,
        Command::Resurvey(args) => ops::resurvey::run(&config, args, stop).await,
        Command::Files(args) => ops::files::run(&config, args, stop).await,
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
