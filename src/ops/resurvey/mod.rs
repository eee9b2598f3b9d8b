//! `thumbnails resurvey`: rewrite stored survey URLs to the current templates.
//!
//! Survey rows (origin NULL or `survey`; uploads are never touched) of the
//! chosen types are read in pages keyed on `thumbnails.id`, joined to their
//! object's ra/dec; the current URL is rendered in Rust and only the rows that
//! differ are updated, in one statement and one short transaction per page.
//! A second run changes nothing. The retired `dr8` type rides with `ls`: a
//! `dr8` row becomes the object's `ls` row when it has none, and otherwise
//! gets the current `ls` URL in place (nothing is deleted).

mod batch;
mod rewrite;

pub use rewrite::{resurvey, ResurveyOptions, Sample, Summary, TypeSummary};

use anyhow::Context;
use clap::Args;

use crate::bus::{PublisherConnection, Topology};
use crate::config::Config;
use crate::store;
use crate::surveys::{Templates, ThumbnailType};

/// Before/after samples shown by `--dry-run`.
const DRY_RUN_SAMPLES: usize = 5;

#[derive(Debug, Clone, Args)]
pub struct ResurveyArgs {
    /// Survey type to rewrite: sdss or ls (repeat or comma-separate for
    /// several). `ls` also rewrites the retired `dr8` rows.
    #[arg(long = "type", value_name = "TYPE", required = true, value_delimiter = ',', value_parser = parse_survey)]
    pub types: Vec<ThumbnailType>,
    /// Count what would change and show a few before/after samples; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish `thumbnail.stored` for every rewritten row so frontends refresh.
    #[arg(long)]
    pub publish: bool,
    /// Rows per page (and per transaction).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

/// Only templated surveys can be rewritten without a lookup.
fn parse_survey(s: &str) -> Result<ThumbnailType, String> {
    match s.trim() {
        "sdss" => Ok(ThumbnailType::Sdss),
        "ls" => Ok(ThumbnailType::Ls),
        "dr8" => Err("dr8 is retired: its rows are rewritten by --type ls".into()),
        "ps1" => Err(
            "ps1 URLs come from a lookup, not a template: use `thumbnails replay --all --types ps1 --replace`"
                .into(),
        ),
        other => Err(format!("unknown survey type '{other}' (expected sdss or ls)")),
    }
}

pub async fn run(
    config: &Config,
    args: ResurveyArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let s = &config.surveys;
    let templates = Templates::new(&s.sdss.template, &s.ls.template).context("surveys")?;
    let db = store::open(&config.database, 2).await?;
    let publisher = if args.publish && !args.dry_run {
        Some(
            PublisherConnection::open_config(
                &config.amqp,
                "thumbnails-resurvey",
                &Topology::new(&config.amqp.exchange, &config.amqp.queue),
            )
            .await
            .context("opening the publisher")?,
        )
    } else {
        None
    };
    let opts = ResurveyOptions {
        types: args.types,
        batch_size: args.batch_size as usize,
        dry_run: args.dry_run,
        samples: if args.dry_run { DRY_RUN_SAMPLES } else { 0 },
        progress: true,
        stop,
    };
    let summary = resurvey(
        &db,
        &templates,
        publisher.as_ref().map(PublisherConnection::publisher),
        &opts,
    )
    .await
    .context("resurvey")?;
    for t in &summary.types {
        for sample in &t.samples {
            println!("{sample}");
        }
        println!("{}", t.line(args.dry_run));
    }
    if let Some(link) = publisher {
        link.close("done").await;
    }
    if summary.interrupted {
        anyhow::bail!(
            "resurvey interrupted; the counts above cover the pages done, run it again to finish"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> Result<ResurveyArgs, clap::Error> {
        let mut argv = vec!["thumbnails", "resurvey"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv)?.command {
            Command::Resurvey(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn types_are_sdss_and_ls_only() {
        let a = args(&["--type", "ls", "--type", "sdss,ls"]).expect("valid");
        assert_eq!(
            a.types,
            vec![ThumbnailType::Ls, ThumbnailType::Sdss, ThumbnailType::Ls]
        );
        assert_eq!(a.batch_size, 10_000);
        assert!(!a.dry_run && !a.publish);
        assert!(args(&[]).is_err(), "--type is required");
        for (bad, says) in [("ps1", "replay"), ("dr8", "--type ls"), ("new", "unknown")] {
            let e = args(&["--type", bad]).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(args(&["--type", "ls", "--batch-size", "0"]).is_err());
    }
}
