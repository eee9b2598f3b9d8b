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

/// Levels from `RUST_LOG` (default `info`); text or JSON lines on stderr.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
        LogFormat::Text => fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
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
