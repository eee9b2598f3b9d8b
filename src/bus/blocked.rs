//! RabbitMQ's resource alarms: with memory or disk short, the broker stops
//! reading from connections that publish and tells them so
//! (`connection.blocked`, then `connection.unblocked`). Every connection the
//! service opens is watched here: one WARN line when it is blocked and one
//! INFO line when it is free again, the gauge
//! `thumbnails_broker_blocked_since_seconds{connection}` (Unix seconds, 0
//! when free), and the list [`blocked_now`] that `/readyz` shows.
//!
//! A publish on a blocked connection is not a failure: its confirm comes
//! once the alarm clears. [`ConfirmClock`] is how the publishers tell a
//! broker that holds them from one that is gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::{Connection, ConnectionStatus, Event};

/// A blocked connection, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedConnection {
    pub connection: String,
    pub since: SystemTime,
    pub reason: String,
}

fn table() -> &'static Mutex<BTreeMap<u64, BlockedConnection>> {
    static TABLE: OnceLock<Mutex<BTreeMap<u64, BlockedConnection>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The connections of this process the broker blocks now, oldest first.
pub fn blocked_now() -> Vec<BlockedConnection> {
    let Ok(t) = table().lock() else {
        return Vec::new();
    };
    let mut all: Vec<_> = t.values().cloned().collect();
    all.sort_by_key(|b| b.since);
    all
}

/// Starts watching `conn`'s blocked and unblocked notices (until it
/// closes). Called for every connection by [`super::Brokers::connect`].
pub fn watch(conn: &Connection, name: &str) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut events = conn.events_listener();
    let name = name.to_string();
    tokio::spawn(async move {
        let mut since: Option<Instant> = None;
        while let Some(event) = events.next().await {
            match event {
                Event::ConnectionBlocked(reason) if since.is_none() => {
                    since = Some(Instant::now());
                    blocked(id, &name, reason);
                }
                Event::ConnectionUnblocked => {
                    if let Some(t) = since.take() {
                        unblocked(id, &name, t.elapsed());
                    }
                }
                _ => {}
            }
        }
        // The connection is gone: it blocks nothing any more.
        if let Ok(mut t) = table().lock() {
            t.remove(&id);
        }
    });
}

fn blocked(id: u64, name: &str, reason: String) {
    let now = SystemTime::now();
    tracing::warn!(
        connection = %name,
        %reason,
        "the broker blocks publishing on this connection (a memory or disk alarm); \
         publishes wait until it clears"
    );
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!("thumbnails_broker_blocked_since_seconds", "connection" => name.to_string())
        .set(unix.as_secs_f64());
    if let Ok(mut t) = table().lock() {
        t.insert(
            id,
            BlockedConnection {
                connection: name.to_string(),
                since: now,
                reason,
            },
        );
    }
}

fn unblocked(id: u64, name: &str, after: Duration) {
    tracing::info!(
        connection = %name,
        blocked_s = after.as_secs_f64(),
        "the broker unblocked this connection; publishes resume"
    );
    metrics::gauge!("thumbnails_broker_blocked_since_seconds", "connection" => name.to_string())
        .set(0.0);
    if let Ok(mut t) = table().lock() {
        t.remove(&id);
    }
}

/// How long a publish has waited for its confirm while its connection was
/// free: time spent blocked does not count, so a broker holding the
/// connection under an alarm is waited for, however long, while one that
/// is gone is given up on after the limit.
pub struct ConfirmClock {
    status: ConnectionStatus,
    free_since: Instant,
}

impl ConfirmClock {
    /// How often the connection's state is looked at while waiting.
    pub const TICK: Duration = Duration::from_millis(250);

    pub fn start(status: &ConnectionStatus) -> Self {
        Self {
            status: status.clone(),
            free_since: Instant::now(),
        }
    }

    /// Called every [`Self::TICK`]: whether `limit` of free time has passed.
    pub fn expired(&mut self, limit: Duration) -> bool {
        if self.status.blocked() {
            self.free_since = Instant::now();
            return false;
        }
        self.free_since.elapsed() >= limit
    }

    pub fn is_blocked(&self) -> bool {
        self.status.blocked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_connection_is_listed_until_unblocked() {
        blocked(u64::MAX, "blocked-test", "low on memory".into());
        let now = blocked_now();
        let mine: Vec<_> = now
            .iter()
            .filter(|b| b.connection == "blocked-test")
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].reason, "low on memory");
        unblocked(u64::MAX, "blocked-test", Duration::from_secs(1));
        assert!(blocked_now().iter().all(|b| b.connection != "blocked-test"));
    }

    #[test]
    fn a_free_connection_expires_after_the_limit() {
        let status = ConnectionStatus::default();
        let mut clock = ConfirmClock::start(&status);
        assert!(!clock.expired(Duration::from_secs(60)));
        assert!(clock.expired(Duration::ZERO));
        assert!(!clock.is_blocked());
    }
}
