//! `thumbnails dead-letters migrate`: makes the dead-letter queues that
//! older versions declared classic (`<amqp.queue>.dead`,
//! `<amqp.cutouts_queue>.dead`) quorum queues, keeping their messages (see
//! [`crate::bus::dead_letters`]). Safe to run again, and while workers run.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bus::dead_letters::{migrate_dead_queue, DeadQueueKind};
use crate::bus::{Brokers, Topology};
use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: DeadLettersAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadLettersAction {
    /// Move classic dead-letter queues to quorum queues of the same name, keeping their messages.
    Migrate {
        /// Report what each dead-letter queue is; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: &Config, args: DeadLettersArgs) -> anyhow::Result<()> {
    let DeadLettersAction::Migrate { dry_run } = args.action;
    let conn = Brokers::from_config(&config.amqp)
        .connect("thumbnails dead-letters")
        .await?;
    let topologies = [
        Topology::new(&config.amqp.exchange, &config.amqp.queue),
        Topology::cutouts(&config.amqp.exchange, &config.amqp.cutouts_queue),
    ];
    let mut result = Ok(());
    for topology in &topologies {
        let done = migrate_dead_queue(&conn, topology, dry_run)
            .await
            .with_context(|| format!("migrating {}", topology.dead_queue()));
        match done {
            Ok(r) => {
                let found = match r.found {
                    DeadQueueKind::Missing => "missing",
                    DeadQueueKind::Classic => "classic",
                    DeadQueueKind::Quorum => "quorum",
                };
                let action = match (dry_run, r.changed, r.found) {
                    (true, _, DeadQueueKind::Classic) => "would migrate",
                    (true, _, _) => "nothing to do",
                    (false, true, _) => "migrated to a quorum queue",
                    (false, false, _) => "already a quorum queue or missing: nothing to do",
                };
                println!(
                    "{}: was {found}, {} messages; {action}; moved {}",
                    r.queue, r.messages, r.moved
                );
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = conn.close(200, "done".into()).await;
    result
}
