//! The HTTP sidecar: custom thumbnail uploads, static files, health.

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Serves `config.http.listen` until `shutdown`.
pub async fn run(
    config: &Config,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = (config, db, shutdown);
    anyhow::bail!("the sidecar is not implemented yet")
}
