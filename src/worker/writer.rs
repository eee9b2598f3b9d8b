//! Batches writes from many deliveries into one transaction each. Transient
//! database errors are retried with backoff while the deliveries wait
//! unacked (never requeued, never dead-lettered); a permanent error is
//! narrowed down to the job that causes it.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use crate::store::retry::{retry, Backoff, Gave};
use crate::store::{write_batch, StoreError, WriteJob, Written};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The job can never be written (a data or integrity error).
    #[error("database refused the rows: {0}")]
    Permanent(String),
    /// The writer stopped before the job was committed.
    #[error("the writer stopped before the rows were committed")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Written, WriteError>>;

/// Handle to the writer tasks. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<(WriteJob, Reply)>,
}

impl Writer {
    /// Starts `parallel` writer tasks taking up to `max_batch` jobs each.
    /// `abort` makes them give up retrying (jobs answer `Stopped`).
    pub fn spawn(
        db: DatabaseConnection,
        max_batch: usize,
        parallel: usize,
        abort: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch * parallel.max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..parallel.max(1) {
            tokio::spawn(run(db.clone(), rx.clone(), max_batch, abort.clone()));
        }
        Self { tx }
    }

    /// Commits one job (with others) and returns its new or changed rows.
    pub async fn write(&self, job: WriteJob) -> Result<Written, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }
}

async fn run(
    db: DatabaseConnection,
    rx: Arc<Mutex<mpsc::Receiver<(WriteJob, Reply)>>>,
    max_batch: usize,
    abort: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let n = {
            let mut rx = rx.lock().await;
            tokio::select! {
                _ = abort.cancelled() => 0,
                n = rx.recv_many(&mut batch, max_batch) => n,
            }
        };
        if n == 0 {
            return;
        }
        let (jobs, replies): (Vec<WriteJob>, Vec<Reply>) = batch.drain(..).unzip();
        let results = commit(&db, &jobs, &abort).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Writes the batch, retrying transient failures until `abort`; on a
/// permanent failure, writes the jobs one by one to find the culprit.
async fn commit(
    db: &DatabaseConnection,
    jobs: &[WriteJob],
    abort: &CancellationToken,
) -> Vec<Result<Written, WriteError>> {
    match commit_retrying(db, jobs, abort).await {
        Ok(rows) => rows.into_iter().map(Ok).collect(),
        Err(WriteError::Permanent(reason)) if jobs.len() == 1 => {
            vec![Err(WriteError::Permanent(reason))]
        }
        Err(WriteError::Permanent(_)) => {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(
                    commit_retrying(db, std::slice::from_ref(job), abort)
                        .await
                        .map(|mut rows| rows.pop().unwrap_or_default()),
                );
            }
            out
        }
        Err(WriteError::Stopped) => vec![Err(WriteError::Stopped); jobs.len()],
    }
}

async fn commit_retrying(
    db: &DatabaseConnection,
    jobs: &[WriteJob],
    abort: &CancellationToken,
) -> Result<Vec<Written>, WriteError> {
    retry(
        Backoff::UNTIL_STOPPED,
        Some(abort),
        StoreError::is_transient,
        || write_batch(db, jobs),
    )
    .await
    .map_err(|gave| match gave {
        Gave::Up(e) => WriteError::Permanent(e.to_string()),
        Gave::Stopped => WriteError::Stopped,
    })
}
