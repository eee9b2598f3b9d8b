//! One component's view of the database being away: a WARN line when it
//! first finds the database unreachable and an INFO line when it has it
//! back, however many attempts fail in between (a restart of PostgreSQL
//! made the worker alone log one line per retry of every batch before).
//! The same two moments move `thumbnails_database_unreachable{component}`
//! and `thumbnails_database_reconnects_total{component}`.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::Instant;

/// The components that report an outage, by the name they log.
pub mod component {
    pub const WORKER: &str = "worker";
    pub const CUTOUTS: &str = "cutouts";
    pub const UPLOADS: &str = "uploads";
    pub const FEED: &str = "feed";
    pub const OUTBOX: &str = "outbox";
}

/// A component's database outage, if one is going on. Shared by the
/// component's tasks (wrap it in an `Arc`).
#[derive(Debug)]
pub struct Outage {
    component: &'static str,
    down: Mutex<Option<Down>>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    failures: u64,
}

/// What a call changed, for the caller and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first failure of an outage (logged).
    Lost,
    /// The first success after an outage (logged).
    Back,
    /// Nothing new (no line).
    Same,
}

impl Outage {
    pub fn new(component: &'static str) -> Self {
        Self {
            component,
            down: Mutex::new(None),
        }
    }

    pub fn component(&self) -> &'static str {
        self.component
    }

    /// A failed attempt that means the database cannot be reached. The
    /// first of an outage is logged at WARN with its cause; the others at
    /// DEBUG.
    pub fn failed(&self, error: &dyn Display) -> Change {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match down.as_mut() {
            Some(d) => {
                d.failures += 1;
                tracing::debug!(component = self.component, %error, failures = d.failures, "database still unreachable");
                Change::Same
            }
            None => {
                *down = Some(Down {
                    since: Instant::now(),
                    failures: 1,
                });
                metrics::gauge!("thumbnails_database_unreachable", "component" => self.component)
                    .set(1.0);
                tracing::warn!(
                    component = self.component,
                    %error,
                    "database unreachable; holding work and retrying until it answers"
                );
                Change::Lost
            }
        }
    }

    /// A statement that went through: ends an outage, logged at INFO with
    /// how long it lasted.
    pub fn recovered(&self) -> Change {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let Some(d) = down.take() else {
            return Change::Same;
        };
        metrics::gauge!("thumbnails_database_unreachable", "component" => self.component).set(0.0);
        metrics::counter!("thumbnails_database_reconnects_total", "component" => self.component)
            .increment(1);
        tracing::info!(
            component = self.component,
            down_s = d.since.elapsed().as_secs_f64(),
            failed_attempts = d.failures,
            "database reachable again; resumed"
        );
        Change::Back
    }

    pub fn is_down(&self) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_change_at_each_end_of_an_outage() {
        let o = Outage::new("test");
        assert_eq!(o.recovered(), Change::Same, "nothing to end");
        assert_eq!(o.failed(&"refused"), Change::Lost);
        assert!(o.is_down());
        for _ in 0..50 {
            assert_eq!(o.failed(&"refused"), Change::Same);
        }
        assert_eq!(o.recovered(), Change::Back);
        assert_eq!(o.recovered(), Change::Same);
        assert!(!o.is_down());
        assert_eq!(o.failed(&"again"), Change::Lost, "a new outage");
    }
}
