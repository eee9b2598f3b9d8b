//! `thumbnails files audit|repair`: the stored upload files against the rows.
//!
//! `audit` counts, changing nothing: rows whose file is in place, elsewhere
//! under `<root>/thumbnails` (an older `storage.depth`) or missing; files at
//! the current depth or not; files no row names. `repair` moves misplaced
//! files to the current depth and points their rows (`file_uri`,
//! `public_url`) there, one page of rows per transaction; with
//! `--delete-orphans` it also removes our files that no row names (a
//! deleted object's cascaded rows leave theirs), once older than the grace
//! period. Only names this service writes, under `<root>/thumbnails`, are
//! ever moved or removed; hidden (in-flight) files never are. A missing or
//! unmovable file is logged and counted, and the run goes on. An alert
//! stamp's kept FITS (`cutouts.keep_fits`) follows its PNG: moved along
//! with it, kept while its stamp has a row, an orphan once none has.

mod bucket;
mod fits;
mod migrate;
mod plan;
mod run;
mod sweep;

pub use migrate::{migrate, MigrateOptions, MigrateSummary};
pub use plan::{classify, expected, may_remove_orphan, plan_row, FileKind, RowFile, RowPlan};
pub use run::{FilesOptions, FilesSummary};

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::files::FileStore;
use crate::store;

#[derive(Debug, Clone, Args)]
pub struct FilesArgs {
    #[command(subcommand)]
    pub action: FilesAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FilesAction {
    /// Count files in and out of place, rows whose file is missing, files without a row; change nothing.
    Audit(PageArgs),
    /// Move files to the current storage.depth and fix their rows; optionally remove files without a row.
    Repair(RepairArgs),
    /// Copy every stored file to another storage (s3://BUCKET/PREFIX or file://PATH) and point its row there; resumable.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Where the files go: s3://BUCKET/PREFIX (with the storage.s3 keys or
    /// AWS_* variables) or file://PATH.
    #[arg(long)]
    pub to: String,
    /// Count what would move; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Rows per page (and per transaction).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub page: PageArgs,
    /// Count what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove our files that no row names (e.g. left by a deleted object).
    #[arg(long)]
    pub delete_orphans: bool,
    /// Seconds a file without a row must have existed before it is removed,
    /// so that an upload in flight (file placed, row not yet committed) is never.
    #[arg(long, default_value_t = 3600)]
    pub grace_secs: u64,
}

pub async fn run(
    config: &Config,
    args: FilesArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let opts = match args.action {
        FilesAction::Migrate(m) => return run_migrate(config, m, stop).await,
        FilesAction::Audit(page) => FilesOptions {
            repair: false,
            dry_run: true,
            delete_orphans: false,
            grace: Duration::ZERO,
            batch_size: page.batch_size as usize,
            progress: true,
            stop,
        },
        FilesAction::Repair(r) => FilesOptions {
            repair: true,
            dry_run: r.dry_run,
            delete_orphans: r.delete_orphans,
            grace: Duration::from_secs(r.grace_secs),
            batch_size: r.page.batch_size as usize,
            progress: true,
            stop,
        },
    };
    let store = FileStore::from_config(&config.storage).context("storage")?;
    let db = store::open(&config.database, 2).await?;
    let summary = files(&db, &store, &opts).await.context("files")?;
    println!("{}", summary.line(&opts));
    if summary.interrupted {
        anyhow::bail!(
            "files interrupted; the counts above cover what was done, run it again to finish"
        );
    }
    Ok(())
}

/// Audits (or repairs) the files of `store`, a folder or a bucket, against
/// the rows of `db`.
pub async fn files(
    db: &sea_orm::DatabaseConnection,
    store: &FileStore,
    opts: &FilesOptions,
) -> Result<FilesSummary, crate::ops::OpsError> {
    let pool = crate::ops::pg_pool(db)?;
    let mut summary = FilesSummary::default();
    let on_bucket = store.bucket().is_some();
    if on_bucket {
        bucket::rows_pass(pool, store, opts, &mut summary).await?;
    } else {
        run::rows_pass(pool, store, opts, &mut summary).await?;
    }
    if !summary.interrupted {
        if on_bucket {
            bucket::files_pass(pool, store, opts, &mut summary).await?;
        } else {
            sweep::files_pass(pool, store, opts, &mut summary).await?;
        }
    }
    Ok(summary)
}

/// `files migrate`: the configured storage to `--to`, whose bucket is
/// checked first (a refusal stops it before any row is read).
async fn run_migrate(
    config: &Config,
    args: MigrateArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let from = FileStore::from_config(&config.storage).context("storage")?;
    let mut target = config.storage.clone();
    target.url = Some(args.to.clone());
    crate::config::parse_location(&args.to).map_err(|why| anyhow::anyhow!("--to: {why}"))?;
    let to = FileStore::from_config(&target).context("--to")?;
    if from.describe() == to.describe() {
        anyhow::bail!("--to {} is the storage already configured", args.to);
    }
    to.check()
        .await
        .with_context(|| format!("--to: {} is not usable", to.describe()))?;
    let db = store::open(&config.database, 2).await?;
    let pool = store::pg_pool(&db, "files migrate")?;
    let opts = MigrateOptions {
        dry_run: args.dry_run,
        batch_size: args.page.batch_size as usize,
        progress: true,
        stop,
    };
    let summary = migrate(pool, &from, &to, &opts)
        .await
        .context("files migrate")?;
    println!("{}", summary.line(&from, &to, opts.dry_run));
    if summary.interrupted {
        anyhow::bail!("files migrate interrupted; run it again to go on");
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "{} files could not be copied (see the log); run it again",
            summary.failed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(line: &[&str]) -> Result<FilesAction, clap::Error> {
        let mut argv = vec!["thumbnails", "files"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv)?.command {
            Command::Files(a) => Ok(a.action),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn audit_and_repair_parse() {
        assert!(matches!(parse(&["audit"]), Ok(FilesAction::Audit(p)) if p.batch_size == 1000));
        match parse(&[
            "repair",
            "--dry-run",
            "--delete-orphans",
            "--grace-secs",
            "60",
        ]) {
            Ok(FilesAction::Repair(r)) => {
                assert!(r.dry_run && r.delete_orphans);
                assert_eq!(r.grace_secs, 60);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["audit", "--delete-orphans"]).is_err(),
            "audit never removes"
        );
        assert!(parse(&["repair", "--batch-size", "0"]).is_err());
        assert!(parse(&[]).is_err());
    }
}
