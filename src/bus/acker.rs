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

use std::collections::BTreeSet;

use lapin::options::BasicAckOptions;
use lapin::Channel;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Done(u64),
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
        for msg in msgs.drain(..) {
            match msg {
                Msg::Done(tag) => book.done(tag),
                Msg::Abandoned => book.abandoned(),
                Msg::Flush(reply) => flushed.push(reply),
            }
        }
        for (tag, multiple) in book.take() {
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
    /// A delivery was left unacked: no `multiple` from now on.
    abandoned: bool,
}

impl AckBook {
    fn done(&mut self, tag: u64) {
        if tag > self.floor {
            self.done.insert(tag);
        }
    }

    fn abandoned(&mut self) {
        self.abandoned = true;
    }

    /// The acks to send now: `(tag, multiple)`.
    fn take(&mut self) -> Vec<(u64, bool)> {
        if self.abandoned {
            return std::mem::take(&mut self.done)
                .into_iter()
                .map(|t| (t, false))
                .collect();
        }
        let mut top = self.floor;
        while self.done.remove(&(top + 1)) {
            top += 1;
        }
        match top - self.floor {
            0 => Vec::new(),
            1 => {
                self.floor = top;
                vec![(top, false)]
            }
            _ => {
                self.floor = top;
                vec![(top, true)]
            }
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
