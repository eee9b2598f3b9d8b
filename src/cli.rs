//! The command line: one binary, one subcommand per job.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::ops::{
    cutouts::CutoutsArgs, dead_letters::DeadLettersArgs, files::FilesArgs, replay::ReplayArgs,
    resurvey::ResurveyArgs,
};

#[derive(Debug, Parser)]
#[command(
    name = "thumbnails",
    version,
    about = "Thumbnails for every astronomical object"
)]
pub struct Cli {
    /// Configuration file (YAML); keys can be overridden by THUMBNAILS_<SECTION>__<KEY>.
    #[arg(long, global = true, default_value = "config.yaml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: migrate, then worker, sidecar, feed and the grayscale pass in one process.
    Run,
    /// Apply database migrations (safe to run twice).
    Migrate,
    /// Consume object-created events and write survey thumbnails.
    Worker,
    /// Publish obj.created/obj.updated for rows SkyPortal writes into objs (database triggers).
    Feed,
    /// The HTTP upload API and static file server.
    Sidecar,
    /// Republish object-created events for objects already in the database.
    Replay(ReplayArgs),
    /// Rewrite stored survey URLs to the current templates, in place.
    Resurvey(ResurveyArgs),
    /// Audit or repair the stored upload files against the rows (`files audit`, `files repair`).
    Files(FilesArgs),
    /// Draw alert cutouts (FITS, FITS.gz, ZTF Avro packets) as PNGs, without a database (`cutouts draw`).
    Cutouts(CutoutsArgs),
    /// Make classic dead-letter queues (from older versions) quorum queues, keeping their messages (`dead-letters migrate`).
    DeadLetters(DeadLettersArgs),
    /// Exit 0 if the sidecar at `http.listen` answers /healthz (for container healthchecks).
    Healthcheck,
}
