//! `thumbnails cutouts draw FILE... --out DIR`: draws alert cutouts (FITS,
//! FITS.gz, ZTF and Rubin/LSST alert packets, container files of many
//! alerts) as PNGs without a database, with the `cutouts` config section
//! (built-in defaults when there is no `config.yaml`), on every core.
//!
//! - A packet or container file yields each alert's stamps as
//!   `<obj_id>_<new|ref|sub>_<SURVEY>.png`; any other file `<stem>.png`
//!   (`.fits`/`.gz` taken off). The format is read from the bytes.
//! - The kind (`--kind new|ref|sub`) is otherwise guessed from the file name
//!   (`cutoutScience`/`cutoutTemplate`/`cutoutDifference`, or `_new`/`_ref`/
//!   `_sub`), science when nothing matches.
//! - The orientation follows `--survey`; without it, packets say theirs,
//!   files named `ZTF...` are ZTF, files whose name says `lsst` LSST, the
//!   rest drawn as stored.
//!
//! One line per failed file or alert (`<file>: <reason>: <message>`), a
//! summary line, and a non-zero exit when any failed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rayon::prelude::*;

use crate::config::Config;
use crate::cutouts::{self, CutoutError, CutoutSettings, Kind, Orientation, Schemas};

#[derive(Debug, Clone, Args)]
pub struct CutoutsArgs {
    #[command(subcommand)]
    pub action: CutoutsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CutoutsAction {
    /// Draw FITS, FITS.gz, or ZTF / Rubin alert packets (and container files) as PNGs into --out.
    Draw(DrawArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DrawArgs {
    /// Files to draw: .fits, .fits.gz, alert packets (ZTF .avro, Rubin Confluent-framed), container files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Directory for the PNGs (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Kind of every FITS file given (new = science, ref = template, sub = difference).
    #[arg(long, value_parser = ["new", "ref", "sub"])]
    pub kind: Option<String>,
    /// Survey whose orientation applies: ZTF (rows flipped), LSST (rotated by -ROTPA), other (as stored).
    #[arg(long)]
    pub survey: Option<String>,
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DrawSummary {
    pub written: usize,
    pub failed: usize,
}

pub async fn run(config: &Config, args: CutoutsArgs) -> anyhow::Result<()> {
    let CutoutsAction::Draw(args) = args.action;
    let settings = config.cutouts.clone();
    let summary = tokio::task::spawn_blocking(move || draw_files(&args, &settings))
        .await
        .context("drawing cutouts")??;
    println!(
        "cutouts draw: {} PNGs written, {} failed",
        summary.written, summary.failed
    );
    anyhow::ensure!(summary.failed == 0, "{} failed", summary.failed);
    Ok(())
}

/// Draws every file on every core, going on past failures (each printed
/// on stderr).
pub fn draw_files(args: &DrawArgs, settings: &CutoutSettings) -> anyhow::Result<DrawSummary> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let schemas = Schemas::new();
    let (written, failed) = args
        .files
        .par_iter()
        .map(|file| {
            let outcomes = draw_file(file, args, settings, &schemas);
            let mut counts = (0, 0);
            for outcome in outcomes {
                match outcome {
                    Ok(n) => counts.0 += n,
                    Err(e) => {
                        counts.1 += 1;
                        eprintln!("{}: {e:#}", file.display());
                    }
                }
            }
            counts
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    Ok(DrawSummary { written, failed })
}

/// Draws one file: per alert (or for the one FITS file), the number of
/// PNGs written or why none.
fn draw_file(
    file: &Path,
    args: &DrawArgs,
    settings: &CutoutSettings,
    schemas: &Schemas,
) -> Vec<anyhow::Result<usize>> {
    let bytes = match std::fs::read(file).context("reading") {
        Ok(b) => b,
        Err(e) => return vec![Err(e)],
    };
    let survey = args.survey.as_deref();
    if cutouts::is_packet(&bytes) {
        let alerts = match cutouts::read_alerts(&bytes, schemas, &settings.lsst_obj_prefix) {
            Ok(a) => a,
            Err(e) => return vec![Err(labelled(e))],
        };
        return alerts
            .into_iter()
            .map(|alert| draw_alert(alert.map_err(labelled)?, survey, args, settings))
            .collect();
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = match args.kind.as_deref() {
        Some(t) => Kind::from_ttype(t).unwrap_or(Kind::Science),
        None => guess_kind(&name),
    };
    let orientation = Orientation::for_survey(survey.or(guess_survey(&name)));
    let drawn = cutouts::draw_bytes(&bytes, kind, orientation, settings)
        .map_err(labelled)
        .and_then(|png| write(&args.out.join(format!("{}.png", stem(&name))), &png));
    vec![drawn.map(|()| 1)]
}

/// Draws one alert's stamps; all or nothing: one bad stamp writes none.
fn draw_alert(
    alert: cutouts::Alert,
    survey: Option<&str>,
    args: &DrawArgs,
    settings: &CutoutSettings,
) -> anyhow::Result<usize> {
    if alert.cutouts.is_empty() {
        anyhow::bail!("{}: no_cutouts: the alert holds no cutouts", alert.obj_id);
    }
    let orientation = Orientation::for_survey(survey.or(Some(alert.survey)));
    let mut pngs = Vec::with_capacity(alert.cutouts.len());
    for (kind, stamp) in &alert.cutouts {
        let png = cutouts::draw_bytes(stamp, *kind, orientation, settings)
            .map_err(labelled)
            .with_context(|| format!("{} {}", alert.obj_id, kind.field()))?;
        let out = format!("{}_{}_{}.png", alert.obj_id, kind.ttype(), alert.survey);
        pngs.push((safe_name(&out), png));
    }
    for (out, png) in &pngs {
        write(&args.out.join(out), png)?;
    }
    Ok(pngs.len())
}

/// The survey a FITS file's name says: `ZTF...`, or `lsst` anywhere.
fn guess_survey(name: &str) -> Option<&'static str> {
    if name.starts_with("ZTF") {
        Some("ZTF")
    } else if name.to_ascii_lowercase().contains("lsst") {
        Some("LSST")
    } else {
        None
    }
}

fn labelled(e: CutoutError) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", e.reason())
}

fn write(path: &Path, png: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

/// The kind a file name says, science when it says none.
pub fn guess_kind(name: &str) -> Kind {
    if let Some(kind) = Kind::ALL.into_iter().find(|k| name.contains(k.field())) {
        return kind;
    }
    Kind::ALL
        .into_iter()
        .find(|k| {
            let tag = format!("_{}", k.ttype());
            name.contains(&format!("{tag}_")) || name.contains(&format!("{tag}."))
        })
        .unwrap_or(Kind::Science)
}

/// The file name without `.gz`, `.fz`, `.fits`/`.fit`.
fn stem(name: &str) -> String {
    let mut stem = name;
    for ext in [".gz", ".fits", ".fit", ".fts"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    safe_name(if stem.is_empty() { "cutout" } else { stem })
}

/// A packet's objectId comes from the file: keep it to one path component.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_guessed_from_names() {
        let g = guess_kind;
        assert_eq!(g("ZTF18a_166_cutoutDifference.fits.gz"), Kind::Difference);
        assert_eq!(g("ZTF18a_cutoutTemplate.fits"), Kind::Template);
        assert_eq!(g("obj_ref.fits"), Kind::Template);
        assert_eq!(g("obj_sub_1.fits.gz"), Kind::Difference);
        assert_eq!(g("subaru.fits"), Kind::Science);
        assert_eq!(g("x.fits"), Kind::Science);
    }

    #[test]
    fn output_names_stay_in_the_directory() {
        assert_eq!(stem("a_b.fits.gz"), "a_b");
        assert_eq!(stem("lsst.fits"), "lsst");
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(
            safe_name("ZTF18aaxjdyr_new_ZTF.png"),
            "ZTF18aaxjdyr_new_ZTF.png"
        );
    }
}
