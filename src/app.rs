//! Wires the subcommands from config: each opens what it needs and runs
//! until done or until the shutdown signal.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::Command;
use crate::config::Config;
use crate::{shutdown, store, worker};

pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    let stop = shutdown::on_signal();
    match command {
        Command::Migrate => {
            let db = store::connect(&config.database.url, 2).await?;
            store::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Worker => run_worker(&config, stop).await,
        Command::Run => {
            let db = store::connect(&config.database.url, config.database.max_connections).await?;
            store::migrate(&db).await?;
            worker::run(&config, db, stop).await.context("worker")
        }
    }
}

async fn run_worker(config: &Config, stop: CancellationToken) -> anyhow::Result<()> {
    let db = store::connect(&config.database.url, config.database.max_connections).await?;
    worker::run(config, db, stop).await.context("worker")
}
