//! `thumbnails replay`: republish `obj.created` for objects already stored.

use clap::Args;

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {}

pub async fn run(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    let _ = (config, args);
    anyhow::bail!("replay is not implemented yet")
}
