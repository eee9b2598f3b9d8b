//! The one database failure policy: which errors are the data's fault,
//! which are worth retrying, which mean the database is unreachable, and
//! how long to wait between attempts. The worker's writer, the upload
//! committer and the operator tools all decide through here.

use std::future::Future;
use std::time::Duration;

use sea_orm::{sqlx, DbErr, RuntimeErr};
use tokio_util::sync::CancellationToken;

use super::outage::Outage;

/// What a database error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (refused, lost, pool timed out): every statement would
    /// fail alike until the database is back.
    Connection,
    /// May pass if run again unchanged (restart, deadlock, serialization,
    /// a table missing while an operator migrates).
    Transient,
    /// The statement or its data is at fault (SQLSTATE class 22 or 23, or a
    /// value that cannot be decoded): it will never pass.
    Permanent,
}

impl Failure {
    pub fn is_retryable(self) -> bool {
        self != Failure::Permanent
    }
}

/// Classifies by SQLSTATE: class 08 is the connection, 22 (data) and 23
/// (integrity) are permanent, anything else is worth retrying.
fn by_code(code: &str) -> Failure {
    // 57P01 (the backend was terminated), 57P02 (crash shutdown) and
    // 57P03 (starting up or shutting down) mean a restart, not a bad
    // statement: the next connection will do.
    if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
        Failure::Connection
    } else if code.starts_with("22") || code.starts_with("23") {
        Failure::Permanent
    } else {
        Failure::Transient
    }
}

/// Classifies an sqlx error (the operator tools' queries).
pub fn classify_sqlx(e: &sqlx::Error) -> Failure {
    use sqlx::Error;
    match e {
        Error::Io(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::Tls(_)
        | Error::WorkerCrashed => Failure::Connection,
        Error::Database(db) => db.code().map_or(Failure::Transient, |c| by_code(&c)),
        Error::Protocol(_) => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// Whether the database could not be reached (refused, lost, restarting):
/// the same statement may pass once it is back.
pub fn is_connection(e: &DbErr) -> bool {
    classify(e) == Failure::Connection
}

/// Classifies a SeaORM error (the worker and the sidecar).
pub fn classify(e: &DbErr) -> Failure {
    match e {
        DbErr::ConnectionAcquire(_) => Failure::Connection,
        DbErr::Conn(RuntimeErr::SqlxError(inner))
        | DbErr::Exec(RuntimeErr::SqlxError(inner))
        | DbErr::Query(RuntimeErr::SqlxError(inner)) => classify_sqlx(inner),
        DbErr::Conn(_) => Failure::Connection,
        DbErr::TryIntoErr { .. } | DbErr::Type(_) | DbErr::Json(_) | DbErr::Custom(_) => {
            Failure::Permanent
        }
        _ => Failure::Transient,
    }
}

/// Whether the error is a unique violation (SQLSTATE 23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// How to retry: exponential backoff from `first` up to `max`, for at most
/// `attempts` tries (`None`: until the work succeeds or is stopped).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: Option<u32>,
}

impl Backoff {
    /// The worker and the committer: deliveries wait unacked while the
    /// database is away, however long that is.
    /// The cap is short so that work resumes within about a second of the
    /// database answering again (each attempt may also wait in the pool for
    /// `acquire_timeout`, which retries its own connects meanwhile).
    pub const UNTIL_STOPPED: Backoff = Backoff {
        first: Duration::from_millis(50),
        max: Duration::from_secs(1),
        attempts: None,
    };
    /// The operator tools: a few tries, then report and let the operator
    /// run again (they are safe to rerun).
    pub const FEW: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(8),
        attempts: Some(5),
    };

    /// The wait before attempt `n + 1` (n from 1).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The wait before a polling loop's next round: `every` while the
    /// database answers; while `outage` goes on, this back-off's delay for
    /// the loop's `rounds` in it (counted here, 0 once it is over), capped
    /// at `every`, so the loop resumes soon after the database is back
    /// rather than at its next regular round.
    pub fn round_wait(&self, outage: &Outage, rounds: &mut u32, every: Duration) -> Duration {
        *rounds = if outage.is_down() { *rounds + 1 } else { 0 };
        if *rounds > 0 {
            self.delay(*rounds).min(every)
        } else {
            every
        }
    }
}

/// Why [`retry`] gave up.
#[derive(Debug)]
pub enum Gave<E> {
    /// The error was not worth retrying, or attempts ran out.
    Up(E),
    /// `stop` fired while waiting.
    Stopped,
}

/// Runs `f` until it succeeds, fails in a way `judge` calls permanent,
/// runs out of attempts, or `stop` fires. A connection failure is told to
/// `outage` (one line per outage, see [`Outage`]); without one, and for
/// other retried failures, each retry is logged at WARN.
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    stop: Option<&CancellationToken>,
    judge: impl Fn(&E) -> Failure,
    outage: Option<&Outage>,
    mut f: F,
) -> Result<T, Gave<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        let failure = match f().await {
            Ok(v) => {
                if let Some(outage) = outage {
                    outage.recovered();
                }
                return Ok(v);
            }
            Err(e) => (judge(&e), e),
        };
        match failure {
            (kind, e)
                if kind.is_retryable() && backoff.attempts.is_none_or(|max| attempt < max) =>
            {
                let wait = backoff.delay(attempt);
                match outage {
                    Some(outage) if kind == Failure::Connection => {
                        outage.failed(&e);
                    }
                    _ => {
                        tracing::warn!(error = %e, attempt, retry_in_s = wait.as_secs_f64(), "write failed; retrying")
                    }
                }
                match stop {
                    Some(stop) => tokio::select! {
                        _ = stop.cancelled() => return Err(Gave::Stopped),
                        _ = tokio::time::sleep(wait) => {}
                    },
                    None => tokio::time::sleep(wait).await,
                }
                attempt += 1;
            }
            (_, e) => return Err(Gave::Up(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes() {
        assert_eq!(by_code("08006"), Failure::Connection);
        assert_eq!(by_code("23505"), Failure::Permanent);
        assert_eq!(by_code("22P02"), Failure::Permanent);
        assert_eq!(by_code("40P01"), Failure::Transient);
        assert_eq!(by_code("57P01"), Failure::Connection);
        assert_eq!(by_code("57P03"), Failure::Connection);
        assert_eq!(by_code("57014"), Failure::Transient);
        assert_eq!(by_code("42P01"), Failure::Transient);
    }

    #[test]
    fn seaorm_and_sqlx_errors() {
        assert_eq!(
            classify_sqlx(&sqlx::Error::PoolTimedOut),
            Failure::Connection
        );
        assert_eq!(
            classify(&DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(
                sqlx::Error::PoolTimedOut
            )))),
            Failure::Connection
        );
        assert_eq!(classify(&DbErr::Custom("x".into())), Failure::Permanent);
        assert_eq!(classify_sqlx(&sqlx::Error::RowNotFound), Failure::Permanent);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::UNTIL_STOPPED;
        assert_eq!(b.delay(1), Duration::from_millis(50));
        assert_eq!(b.delay(2), Duration::from_millis(100));
        assert_eq!(b.delay(40), Duration::from_secs(1));
    }

    #[test]
    fn a_polling_loop_waits_less_while_the_database_is_away() {
        let (b, outage, every) = (
            Backoff::UNTIL_STOPPED,
            Outage::new("test"),
            Duration::from_secs(5),
        );
        let mut rounds = 0;
        assert_eq!(b.round_wait(&outage, &mut rounds, every), every);
        outage.failed(&"refused");
        assert_eq!(
            b.round_wait(&outage, &mut rounds, every),
            Duration::from_millis(50)
        );
        assert_eq!(
            b.round_wait(&outage, &mut rounds, every),
            Duration::from_millis(100)
        );
        let short = Duration::from_millis(70);
        assert_eq!(
            b.round_wait(&outage, &mut rounds, short),
            short,
            "capped at the interval"
        );
        outage.recovered();
        assert_eq!(b.round_wait(&outage, &mut rounds, every), every);
        assert_eq!(rounds, 0);
    }

    #[tokio::test]
    async fn retry_stops_at_the_attempt_limit_and_on_refusal() {
        let fast = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(1),
            attempts: Some(3),
        };
        let mut calls = 0;
        let r: Result<(), _> = retry(
            fast,
            None,
            |_: &String| Failure::Transient,
            None,
            || {
                calls += 1;
                async { Err("down".to_string()) }
            },
        )
        .await;
        assert!(matches!(r, Err(Gave::Up(_))));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = retry(
            fast,
            None,
            |_: &String| Failure::Permanent,
            None,
            || {
                calls += 1;
                async { Err("bad".to_string()) }
            },
        )
        .await;
        assert!(matches!(r, Err(Gave::Up(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retry_ends_when_stopped() {
        let stop = CancellationToken::new();
        stop.cancel();
        let r: Result<(), _> = retry(
            Backoff::UNTIL_STOPPED,
            Some(&stop),
            |_: &String| Failure::Connection,
            None,
            || async { Err("down".to_string()) },
        )
        .await;
        assert!(matches!(r, Err(Gave::Stopped)));
    }
}
