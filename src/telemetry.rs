//! Logging, set up once for the binary (tests use the same function).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Levels from `RUST_LOG` (default `info`); text or JSON lines on stderr.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
