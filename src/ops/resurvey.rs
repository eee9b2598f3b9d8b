//! `thumbnails resurvey`: rewrite stored survey URLs to the current templates.

use clap::Args;

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct ResurveyArgs {}

pub async fn run(config: &Config, args: ResurveyArgs) -> anyhow::Result<()> {
    let _ = (config, args);
    anyhow::bail!("resurvey is not implemented yet")
}
