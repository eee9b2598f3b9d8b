//! `thumbnails replay`: republish `obj.created` for objects already stored,
//! for the worker to process.
//!
//! Objects are read in pages keyed on `objs.id`. With `--missing`, each page
//! carries three indexed existence checks per object (the unique
//! `(obj_id, type)` index answers them), so the cost is one pass over the
//! objects plus work for the ones that need it, never a rescan per object.

mod publish;

pub use publish::{replay, ReplayOptions, ReplaySummary, Selection};

use anyhow::Context;
use chrono::{NaiveDate, NaiveDateTime};
use clap::{ArgGroup, Args};

use crate::bus::{PublisherConnection, Topology};
use crate::config::Config;
use crate::store;
use crate::surveys::ThumbnailType;

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("select").required(true).multiple(true).args(["all", "missing", "obj_id"])))]
pub struct ReplayArgs {
    /// Every object.
    #[arg(long, conflicts_with_all = ["missing", "obj_id"])]
    pub all: bool,
    /// Objects lacking any archival type (sdss, ls, ps1), or whose ps1 row is
    /// the "currently unavailable" placeholder. Each event asks only for the
    /// missing types. Moving objects (is_roid) get no archival thumbnails and
    /// are never missing.
    #[arg(long)]
    pub missing: bool,
    /// This object (repeatable; combines with --missing as a filter).
    #[arg(long = "obj-id", value_name = "ID")]
    pub obj_id: Vec<String>,
    /// Only objects created at or after this UTC time (2026-01-31 or 2026-01-31T12:00:00).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub created_after: Option<NaiveDateTime>,
    /// Only objects created before this UTC time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub created_before: Option<NaiveDateTime>,
    /// Archival types to ask for (sdss, ls, ps1; comma-separated). Default: all three.
    #[arg(long, value_name = "TYPES", value_delimiter = ',', value_parser = parse_archival)]
    pub types: Vec<ThumbnailType>,
    /// Ask the worker to overwrite existing rows of those types.
    #[arg(long)]
    pub replace: bool,
    /// At most this many events per second.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Count the events that would be published; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects per page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

fn parse_time(s: &str) -> Result<NaiveDateTime, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| format!("'{s}' is not a time such as 2026-01-31 or 2026-01-31T12:00:00"))
}

fn parse_archival(s: &str) -> Result<ThumbnailType, String> {
    crate::bus::events::parse_types(&[s.trim().to_string()])
        .map_err(|e| e.to_string())?
        .first()
        .copied()
        .ok_or_else(|| format!("'{s}' is not an archival type"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a positive number of events per second"
        )),
    }
}

pub async fn run(
    config: &Config,
    args: ReplayArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let db = store::open(&config.database, 2).await?;
    let opts = ReplayOptions {
        selection: Selection {
            missing: args.missing,
            obj_ids: args.obj_id,
            created_after: args.created_after,
            created_before: args.created_before,
        },
        types: (!args.types.is_empty()).then_some(args.types),
        replace: args.replace,
        rate: args.rate,
        dry_run: args.dry_run,
        batch_size: args.batch_size as usize,
        progress: true,
        stop,
    };
    let summary = if args.dry_run {
        replay(&db, None, &opts).await
    } else {
        let link = PublisherConnection::open_config(
            &config.amqp,
            "thumbnails-replay",
            &Topology::new(&config.amqp.exchange, &config.amqp.queue),
        )
        .await
        .context("opening the publisher")?;
        let summary = replay(&db, Some(link.publisher()), &opts).await;
        link.close("done").await;
        summary
    }
    .context("replay")?;
    if summary.skipped > 0 || summary.not_found > 0 {
        tracing::info!(
            skipped = summary.skipped,
            not_found = summary.not_found,
            "objects without a valid position were skipped; ids not found were ignored"
        );
    }
    println!("{}", summary.line(args.dry_run));
    if summary.interrupted {
        anyhow::bail!(
            "replay interrupted; run it again to continue (the worker skips rows already made)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> Result<ReplayArgs, clap::Error> {
        let mut argv = vec!["thumbnails", "replay"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv)?.command {
            Command::Replay(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn selection_is_required_and_all_stands_alone() {
        assert!(args(&[]).is_err());
        assert!(args(&["--all", "--missing"]).is_err());
        assert!(args(&["--all", "--obj-id", "a"]).is_err());
        let a = args(&["--missing", "--obj-id", "a", "--obj-id", "b"]).expect("valid");
        assert!(a.missing && !a.all);
        assert_eq!(a.obj_id, vec!["a", "b"]);
        assert_eq!(a.batch_size, 1000);
    }

    #[test]
    fn options_parse_and_bad_values_are_refused() {
        let a = args(&[
            "--all",
            "--types",
            "ps1,sdss",
            "--replace",
            "--rate",
            "250",
            "--created-after",
            "2026-01-31",
            "--created-before",
            "2026-02-01T12:30:00Z",
        ])
        .expect("valid");
        assert_eq!(a.types, vec![ThumbnailType::Ps1, ThumbnailType::Sdss]);
        assert!(a.replace);
        assert_eq!(a.rate, Some(250.0));
        assert_eq!(
            a.created_after.map(|t| t.to_string()).as_deref(),
            Some("2026-01-31 00:00:00")
        );
        assert_eq!(
            a.created_before.map(|t| t.to_string()).as_deref(),
            Some("2026-02-01 12:30:00")
        );
        for bad in [
            vec!["--all", "--types", "new"],
            vec!["--all", "--types", "bogus"],
            vec!["--all", "--rate", "0"],
            vec!["--all", "--rate", "-3"],
            vec!["--all", "--rate", "NaN"],
            vec!["--all", "--created-after", "yesterday"],
            vec!["--all", "--batch-size", "0"],
        ] {
            assert!(args(&bad).is_err(), "{bad:?}");
        }
    }
}
