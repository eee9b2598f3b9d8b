//! Failed PS1 lookups are tried again, in process, with a growing back-off:
//! `surveys.ps1.retry_first_s` (one minute) after the failure, then twice as
//! long each time, up to `surveys.ps1.retry_max_s`. A retry is an
//! `obj.created` event for ps1 alone, marked `existing`, published to the
//! worker's own queue, so it goes through the same path (a lookup, a write
//! that replaces only the placeholder, `thumbnail.stored`, and nothing for a
//! deleted object). The schedule lives in memory: a restart forgets it, and
//! the sweep (`reconcile.ps1_retry_after_s`) heals what is left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusLink, ObjCreated, ROUTING_OBJ_CREATED};
use crate::surveys::ThumbnailType;

/// Objects waiting for a retry at most; beyond, the sweep heals them.
const MAX_PENDING: usize = 100_000;

/// The wait before retry number `attempt` (1 = the first).
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    first.saturating_mul(factor).min(max)
}

#[derive(Debug, Clone)]
struct Pending {
    ra: f64,
    dec: f64,
    /// The order of the event whose lookup failed (see `ObjCreated::seq`).
    seq: Option<i64>,
    attempt: u32,
    /// `None` while its retry event is out (waiting for its result).
    due: Option<Instant>,
}

/// A retry due now: obj_id, ra, dec, seq.
type Due = (String, f64, f64, Option<i64>);

/// The schedule; cheap to clone.
#[derive(Clone)]
pub struct Ps1Retries {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    wake: Arc<Notify>,
    first: Duration,
    max: Duration,
}

impl Ps1Retries {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            pending: Arc::default(),
            wake: Arc::default(),
            first,
            max,
        }
    }

    /// A lookup for `obj_id` at this position failed: try again later,
    /// each failure waiting twice as long as the last.
    pub fn failed(&self, obj_id: &str, ra: f64, dec: f64, seq: Option<i64>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() >= MAX_PENDING && !pending.contains_key(obj_id) {
            return;
        }
        let attempt = pending.get(obj_id).map_or(1, |p| p.attempt + 1);
        let due = Instant::now() + backoff(attempt, self.first, self.max);
        pending.insert(
            obj_id.to_owned(),
            Pending {
                ra,
                dec,
                seq,
                attempt,
                due: Some(due),
            },
        );
        metrics::gauge!("thumbnails_ps1_retries_pending").set(pending.len() as f64);
        drop(pending);
        self.wake.notify_one();
    }

    /// A lookup for `obj_id` answered (or the object is gone): no retry.
    pub fn settled(&self, obj_id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            if pending.remove(obj_id).is_some() {
                metrics::gauge!("thumbnails_ps1_retries_pending").set(pending.len() as f64);
            }
        }
    }

    /// Takes the retries due now (marking them out) and the next due time.
    fn take_due(&self) -> (Vec<Due>, Option<Instant>) {
        let now = Instant::now();
        let Ok(mut pending) = self.pending.lock() else {
            return (Vec::new(), None);
        };
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, p) in pending.iter_mut() {
            match p.due {
                Some(at) if at <= now => {
                    p.due = None;
                    due.push((id.clone(), p.ra, p.dec, p.seq));
                }
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        (due, next)
    }

    /// Publishes retries as they fall due, until `stop`. A retry that
    /// cannot be published is scheduled again as a failure.
    pub async fn run(self, link: BusLink, stop: CancellationToken) {
        loop {
            let (due, next) = self.take_due();
            for (id, ra, dec, seq) in due {
                let Ok(body) = ObjCreated::existing_body(
                    &id,
                    ra,
                    dec,
                    false,
                    Some(&[ThumbnailType::Ps1]),
                    false,
                    seq,
                ) else {
                    self.settled(&id);
                    continue;
                };
                match link.publish(ROUTING_OBJ_CREATED, &body).await {
                    Ok(()) => {
                        metrics::counter!("thumbnails_ps1_retries_total").increment(1);
                    }
                    Err(e) => {
                        tracing::warn!(obj_id = %id, error = %e, "cannot publish a PS1 retry; trying later");
                        self.failed(&id, ra, dec, seq);
                    }
                }
            }
            let sleep = next.map_or(Duration::from_secs(3600), |n| {
                n.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        link.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_from_the_first_wait_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a, first, max).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(u32::MAX, first, max), max);
    }

    #[tokio::test]
    async fn failures_count_up_and_an_answer_forgets_them() {
        let r = Ps1Retries::new(Duration::ZERO, Duration::from_secs(1));
        r.failed("a", 1.0, 2.0, None);
        r.failed("a", 1.5, 2.0, Some(7));
        let (due, _) = r.take_due();
        assert_eq!(due, vec![("a".to_string(), 1.5, 2.0, Some(7))]);
        // Out: not due again until it fails again.
        assert!(r.take_due().0.is_empty());
        assert_eq!(r.pending.lock().expect("lock")["a"].attempt, 2);
        r.settled("a");
        assert!(r.pending.lock().expect("lock").is_empty());
    }
}
