//! A broker that refuses for good: a declaration answered with
//! PRECONDITION_FAILED (a queue or exchange that exists with other
//! arguments), ACCESS_REFUSED (the user's permissions) or NOT_FOUND. No
//! reconnect cures it: at start the service stops with one line naming what
//! was refused, the broker's words (the argument, both values) and the way
//! out; while running (another service redeclared a queue) the consumer
//! backs off and says so, and `/readyz` reports it (see [`Refusals`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use super::BusError;

/// What was being declared: `queue NAME` or `exchange NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Queue,
    Exchange,
}

/// The broker's refusal of a declaration, or the error as it was.
pub fn classify(e: lapin::Error, what: Declared, name: &str) -> BusError {
    let lapin::ErrorKind::ProtocolError(amqp) = e.kind() else {
        return e.into();
    };
    let code = amqp.get_id();
    if !matches!(code, 403 | 404 | 406) {
        return e.into();
    }
    let message = amqp.get_message().as_str().to_string();
    BusError::Refused {
        what: describe(what, name),
        message,
        way_out: way_out(code, what, name),
    }
}

fn describe(what: Declared, name: &str) -> String {
    match what {
        Declared::Queue => format!("queue {name}"),
        Declared::Exchange => format!("exchange {name}"),
    }
}

/// What an operator can do about a refusal.
fn way_out(code: u16, what: Declared, name: &str) -> String {
    match (code, what) {
        (406, Declared::Queue) => format!(
            "delete the queue (rabbitmqctl delete_queue {name}; move its messages first) \
             or set amqp.queue / amqp.cutouts_queue to another name"
        ),
        (406, Declared::Exchange) => format!(
            "delete the exchange (rabbitmqctl delete_exchange {name}) or set amqp.exchange to another name"
        ),
        (403, _) => "give the user configure, write and read permissions on the vhost \
                     (rabbitmqctl set_permissions)"
            .to_string(),
        _ => "create what the broker says is missing, or fix amqp.url's vhost".to_string(),
    }
}

/// The refusals in force, by queue, for `/readyz`: set while a consumer
/// cannot declare its queue, cleared once it consumes again.
pub struct Refusals;

fn table() -> &'static Mutex<BTreeMap<String, String>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

impl Refusals {
    pub fn set(queue: &str, cause: &str) {
        if let Ok(mut t) = table().lock() {
            t.insert(queue.to_string(), cause.to_string());
        }
    }

    pub fn clear(queue: &str) {
        if let Ok(mut t) = table().lock() {
            t.remove(queue);
        }
    }

    /// The causes in force for these queues (the ones a sidecar's config
    /// names: several services may share a process in tests).
    pub fn of<'a>(queues: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let Ok(t) = table().lock() else {
            return Vec::new();
        };
        queues
            .into_iter()
            .filter_map(|q| t.get(q).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_says_a_way_out() {
        assert!(way_out(406, Declared::Queue, "q").contains("amqp.cutouts_queue"));
        assert!(way_out(406, Declared::Queue, "q").contains("delete_queue q"));
        assert!(way_out(406, Declared::Exchange, "x").contains("amqp.exchange"));
        assert!(way_out(403, Declared::Queue, "q").contains("set_permissions"));
        Refusals::set("refusals-test-q", "refused");
        assert_eq!(Refusals::of(["refusals-test-q", "other"]), vec!["refused"]);
        Refusals::clear("refusals-test-q");
        assert!(Refusals::of(["refusals-test-q"]).is_empty());
    }
}
