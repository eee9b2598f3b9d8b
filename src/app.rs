//! Wires the subcommands from config: each opens what it needs and runs
//! until done or until the shutdown signal.

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::cli::Command;
use crate::config::Config;
use crate::{feed, ops, remote, shutdown, sidecar, store, worker};

pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    let stop = shutdown::on_signal();
    config.announce_secret_files();
    match command {
        Command::Migrate => {
            let db = migrated(&config, 2).await?;
            tracing::info!(feed_enabled = config.feed.enabled, "migrations applied");
            db.close().await?;
            Ok(())
        }
        Command::Worker => {
            let db = connect(&config).await?;
            check_storage(&config).await?;
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
            check_storage(&config).await?;
            sidecar::run(&config, db, stop).await.context("sidecar")
        }
        Command::Run => {
            let db = migrated(&config, config.database.max_connections).await?;
            check_storage(&config).await?;
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
        Command::DeadLetters(args) => ops::dead_letters::run(&config, args).await,
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

/// Opens the pool of a service that does not migrate, after checking that
/// the tables have the columns it writes.
async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    announce(config);
    let db = store::open(&config.database, config.database.max_connections).await?;
    store::schema::check_columns(db.get_postgres_connection_pool()).await?;
    Ok(db)
}

/// Creates the database if missing, checks the role's grants and the
/// schema it meets, migrates, checks again, and sets the feed's triggers
/// from `feed.enabled` (so that nothing inserted between `migrate` and the
/// first relay is left for the sweep).
async fn migrated(config: &Config, connections: u32) -> anyhow::Result<DatabaseConnection> {
    announce(config);
    store::ensure_database(&config.database).await?;
    let db = store::open(&config.database, connections).await?;
    let pool = db.get_postgres_connection_pool();
    store::schema::check_privileges(pool).await?;
    store::schema::check_columns(pool).await?;
    store::migrate(&db).await?;
    store::schema::check_columns(pool).await?;
    feed::set_enabled(pool, config.feed.enabled).await?;
    Ok(db)
}

/// A folder that cannot be written, or a bucket that refuses (bad key,
/// missing bucket) or does not answer, stops the service at start, before
/// any part of it runs: one line naming the folder, or the bucket and the
/// endpoint.
async fn check_storage(config: &Config) -> anyhow::Result<()> {
    let files = crate::files::FileStore::from_config(&config.storage).context("storage")?;
    files
        .check()
        .await
        .with_context(|| format!("storage: the {} is not writable", files.describe()))?;
    tracing::info!(storage = %files.describe(), "file storage");
    Ok(())
}

/// One line saying where the service connects (no passwords).
fn announce(config: &Config) {
    tracing::info!(
        database = %crate::config::redact(&config.database.url),
        broker = %crate::config::redact_urls(&config.amqp.url),
        "connecting"
    );
}

/// The one line printed for a failure at the edge: each cause of the chain
/// once (a driver's message often repeats its source's, and a context may
/// already quote it).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("TLS upgrade required")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("Connection Error: {0}")]
        struct Middle(#[source] Inner);
        let e = anyhow::Error::new(Middle(Inner)).context("cannot connect");
        assert_eq!(
            one_line(&e),
            "cannot connect: Connection Error: TLS upgrade required"
        );
    }
}
