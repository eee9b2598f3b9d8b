//! Logging, set up once for the binary (tests use the same function).
//!
//! On a terminal, log lines go through tracing-indicatif's writer so that
//! the operator tools' progress bars (spans marked `indicatif.pb_show`) are
//! not torn by log output; elsewhere logs are plain lines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_indicatif::filter::{hide_indicatif_span_fields, IndicatifFilter};
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

pub mod metrics;

use crate::config::LogFormat;

/// Whether [`init`] installed the layer that draws progress bars.
static BARS: AtomicBool = AtomicBool::new(false);

/// Whether progress bars are drawn (text logs on a terminal); otherwise
/// progress is reported as log lines.
pub fn draws_bars() -> bool {
    BARS.load(Ordering::Relaxed)
}

/// Where sqlx logs PostgreSQL's NOTICEs, at INFO: idempotent migrations
/// (`ADD VALUE IF NOT EXISTS`, `CREATE .. IF NOT EXISTS`) would print one
/// "already exists, skipping" line each at every start.
const PG_NOTICES: &str = "sqlx::postgres::notice";

/// Where lapin logs, at ERROR, every channel the broker closes with the
/// whole `Close` method: a refusal the service reports itself, once and
/// readably (`bus::refusal`), or a channel it closes on purpose.
const LAPIN_CHANNEL: &str = "lapin::channel";

/// The filter for `RUST_LOG` (default `info`): PostgreSQL notices are
/// shown from WARN up, and lapin's channel closes not at all, unless the
/// variable names their targets itself.
fn filter_spec(rust_log: Option<&str>) -> String {
    let spec = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let mut out = spec.to_string();
    if !spec.contains(PG_NOTICES) {
        out.push_str(&format!(",{PG_NOTICES}=warn"));
    }
    if !spec.contains("lapin") {
        out.push_str(&format!(",{LAPIN_CHANNEL}=off"));
    }
    out
}

/// Levels from `RUST_LOG` (default `info`); text or JSON lines on stderr.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = || {
        let spec = filter_spec(std::env::var("RUST_LOG").ok().as_deref());
        EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("RUST_LOG: {e}; using info");
            EnvFilter::new(filter_spec(None))
        })
    };
    let _ = match format {
        LogFormat::Json => fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .try_init()
            .is_ok(),
        LogFormat::Text if std::io::stderr().is_terminal() => {
            let bars = IndicatifLayer::new()
                .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
            let installed = tracing_subscriber::registry()
                .with(
                    fmt::layer()
                        .with_writer(bars.get_stderr_writer())
                        .with_filter(filter()),
                )
                .with(bars.with_filter(IndicatifFilter::new(false)))
                .try_init()
                .is_ok();
            if installed {
                BARS.store(true, Ordering::Relaxed);
            }
            installed
        }
        // Not a terminal (a file, journald, a pipe): no colour codes.
        LogFormat::Text => fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init()
            .is_ok(),
    };
}

/// `error: caused by: ...` on one line, for the log.
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_notices_are_quiet_unless_asked_for() {
        assert_eq!(
            filter_spec(None),
            "info,sqlx::postgres::notice=warn,lapin::channel=off"
        );
        assert_eq!(
            filter_spec(Some("debug,lapin=warn")),
            "debug,lapin=warn,sqlx::postgres::notice=warn"
        );
        assert_eq!(
            filter_spec(Some("info,sqlx::postgres::notice=info")),
            "info,sqlx::postgres::notice=info,lapin::channel=off"
        );
        assert!(EnvFilter::try_new(filter_spec(None)).is_ok());
    }
}
