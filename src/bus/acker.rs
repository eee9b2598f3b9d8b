//! Acknowledgements for one channel, several at a time: deliveries that
//! finish are acked with `multiple` up to the highest tag below which every
//! delivery has finished, one frame for a whole batch of commits.
//!
//! A delivery left unacked on purpose (it must be redelivered) must never
//! be covered by a `multiple` ack, so once one is abandoned the channel
//! falls back to acking one tag at a time. Every delivery gets an
//! [`AckToken`]; dropping it without [`AckToken::ack`] abandons the
//! delivery, so a handler that fails or is cancelled cannot stall the
//! channel's window.
//!
//! A dead-lettered delivery is acked on its own at once
//! ([`AckToken::ack_now`]), not held for the next `multiple`: its copy is
//! already in the dead-letter queue, so if the process dies before a
//! `multiple` covers it, the broker would redeliver it and it would be
//! dead-lettered twice.

use std::collections::BTreeSet;

use lapin::options::BasicAckOptions;
use lapin::Channel;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Done(u64),
    DoneNow(u64),
    Abandoned,
    Flush(oneshot::Sender<()>),
}

/// The acker of one channel. Cheap to clone.
#[derive(Clone)]
pub struct Acker {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Acker {
    /// Starts the acking task for `channel` (tags as this channel numbers
    /// them, from 1).
    pub fn spawn(channel: Channel) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(channel, rx));
        Self { tx }
    }

    /// The token of one delivery.
    pub fn token(&self, delivery_tag: u64) -> AckToken {
        AckToken {
            tag: delivery_tag,
            tx: Some(self.tx.clone()),
        }
    }

    /// Returns once every ack asked for before the call has been sent.
    pub async fn flush(&self) {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = answer.await;
        }
    }
}

/// One delivery's ack; dropped without [`ack`](Self::ack), the delivery is
/// left for the broker to redeliver.
pub struct AckToken {
    tag: u64,
    tx: Option<mpsc::UnboundedSender<Msg>>,
}

impl AckToken {
    pub fn ack(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Done(self.tag));
        }
    }

    /// Acks this delivery alone, without waiting for a `multiple` (for a
    /// delivery whose effect cannot be undone or repeated harmlessly, such
    /// as a confirmed dead-letter copy).
    pub fn ack_now(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::DoneNow(self.tag));
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Abandoned);
        }
    }
}

async fn run(channel: Channel, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut book = AckBook::default();
    let mut msgs = Vec::with_capacity(1024);
    while rx.recv_many(&mut msgs, 4096).await > 0 {
        let mut flushed = Vec::new();
        let mut now = Vec::new();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Done(tag) => book.done(tag),
                Msg::DoneNow(tag) => now.extend(book.done_now(tag)),
                Msg::Abandoned => book.abandoned(),
                Msg::Flush(reply) => flushed.push(reply),
            }
        }
        for (tag, multiple) in now.into_iter().chain(book.take()) {
            if let Err(e) = channel.basic_ack(tag, BasicAckOptions { multiple }).await {
                // The channel died; the broker has requeued what it held.
                tracing::warn!(error = %e, tag, "ack failed; the broker will redeliver");
            }
        }
        for reply in flushed {
            let _ = reply.send(());
        }
    }
}

/// Which tags to ack and how; no I/O.
#[derive(Debug, Default)]
struct AckBook {
    /// Every tag up to here is acked.
    floor: u64,
    /// Finished tags above the floor.
    done: BTreeSet<u64>,
    /// Those of `done` already acked on their own ([`Self::done_now`]).
    sent: BTreeSet<u64>,
    /// A delivery was left unacked: no `multiple` from now on.
    abandoned: bool,
}

impl AckBook {
    fn done(&mut self, tag: u64) {
        if tag > self.floor {
            self.done.insert(tag);
        }
    }

    /// A delivery to ack on its own, now: the ack to send. It still counts
    /// as done for the floor, but no later ack names it again.
    fn done_now(&mut self, tag: u64) -> Option<(u64, bool)> {
        if tag <= self.floor || !self.done.insert(tag) {
            return None;
        }
        self.sent.insert(tag);
        Some((tag, false))
    }

    fn abandoned(&mut self) {
        self.abandoned = true;
    }

    /// The acks to send now: `(tag, multiple)`.
    fn take(&mut self) -> Vec<(u64, bool)> {
        if self.abandoned {
            let sent = std::mem::take(&mut self.sent);
            return std::mem::take(&mut self.done)
                .into_iter()
                .filter(|t| !sent.contains(t))
                .map(|t| (t, false))
                .collect();
        }
        let mut top = self.floor;
        // The tags acked by this run that were not acked on their own.
        let mut unsent = Vec::new();
        while self.done.remove(&(top + 1)) {
            top += 1;
            if !self.sent.remove(&top) {
                unsent.push(top);
            }
        }
        self.floor = top;
        match unsent.as_slice() {
            [] => Vec::new(),
            [one] => vec![(*one, false)],
            // `multiple` up to the highest unsent tag: the ones acked on
            // their own below it are no longer outstanding, and a tag the
            // broker no longer holds is never named.
            [.., last] => vec![(*last, true)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contiguous_run_is_one_multiple_ack() {
        let mut b = AckBook::default();
        for t in [3, 1, 2] {
            b.done(t);
        }
        assert_eq!(b.take(), vec![(3, true)]);
        b.done(4);
        assert_eq!(b.take(), vec![(4, false)]);
        assert_eq!(b.take(), vec![]);
    }

    #[test]
    fn a_hole_holds_back_the_tags_above_it() {
        let mut b = AckBook::default();
        for t in [1, 2, 4, 5] {
            b.done(t);
        }
        assert_eq!(b.take(), vec![(2, true)]);
        b.done(3);
        assert_eq!(b.take(), vec![(5, true)]);
    }

    #[test]
    fn a_delivery_acked_now_is_never_named_again() {
        let mut b = AckBook::default();
        b.done(1);
        assert_eq!(b.done_now(3), Some((3, false)));
        assert_eq!(b.done_now(3), None);
        // 2 finishes: one multiple up to 2; 3 was acked already.
        b.done(2);
        assert_eq!(b.take(), vec![(2, true)]);
        assert_eq!(b.done_now(4), Some((4, false)));
        assert_eq!(b.take(), vec![], "only 4, acked already");
        b.done(5);
        assert_eq!(b.take(), vec![(5, false)]);
        // After an abandoned delivery, a tag acked now is not acked twice.
        assert_eq!(b.done_now(7), Some((7, false)));
        b.done(8);
        b.abandoned();
        assert_eq!(b.take(), vec![(8, false)]);
    }

    #[test]
    fn after_an_abandoned_delivery_acks_are_single() {
        let mut b = AckBook::default();
        b.done(1);
        b.done(3);
        b.abandoned(); // tag 2 must be redelivered
        assert_eq!(b.take(), vec![(1, false), (3, false)]);
        b.done(4);
        b.done(5);
        assert_eq!(b.take(), vec![(4, false), (5, false)]);
    }
}
