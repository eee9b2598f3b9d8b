//! Progress for long operator runs: an indicatif bar with rows/s and ETA
//! where the logging draws bars (text logs on a terminal, see `telemetry`),
//! plain periodic log lines otherwise (JSON logs, a log file).

use std::time::{Duration, Instant};

use indicatif::{ProgressState, ProgressStyle};
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// How often the plain log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    label: String,
    unit: &'static str,
    mode: Mode,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

enum Mode {
    Off,
    /// A span that tracing-indicatif draws as a bar (when `telemetry` set it
    /// up: text logs on a terminal), so
    /// log lines are printed above it instead of through it.
    Bar(tracing::Span),
    Lines,
}

impl Progress {
    /// `enabled = false` reports nothing (library callers, tests).
    pub fn new(label: &str, unit: &'static str, total: u64, enabled: bool) -> Self {
        let mode = if !enabled {
            Mode::Off
        } else if crate::telemetry::draws_bars() {
            let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
            let template = format!(
                "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} {{rate}} ETA {{eta}} {{msg}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                let rate = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                };
                let style =
                    style
                        .with_key("rate", rate)
                        .progress_chars("=> ")
                        .with_key("prefix", {
                            let label = label.to_string();
                            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{label}");
                            }
                        });
                span.pb_set_style(&style);
            }
            span.pb_set_length(total);
            span.pb_start();
            Mode::Bar(span)
        } else {
            Mode::Lines
        };
        let now = Instant::now();
        Self {
            label: label.into(),
            unit,
            mode,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.mode {
            Mode::Off => {}
            Mode::Bar(span) => span.pb_inc(n),
            Mode::Lines => {
                if self.last_line.elapsed() >= LOG_EVERY {
                    self.last_line = Instant::now();
                    self.line();
                }
            }
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Mode::Bar(span) = &self.mode {
            span.pb_set_message(&msg);
        }
    }

    /// Runs `f` (typically a log call) with the bar hidden, so it does not tear.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.mode {
            Mode::Bar(_) => tracing_indicatif::suspend_tracing_indicatif(f),
            _ => f(),
        }
    }

    pub fn finish(self) {
        match &self.mode {
            Mode::Off => {}
            // Closing the span removes its bar.
            Mode::Bar(_) => {}
            Mode::Lines => self.line(),
        }
    }

    fn line(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        let left = self.total.saturating_sub(self.done);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
        };
        tracing::info!(
            "{}: {}/{} {}, {:.0} {}/s, ETA {}",
            self.label,
            self.done,
            self.total,
            self.unit,
            rate,
            self.unit,
            eta
        );
    }
}
