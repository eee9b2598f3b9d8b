//! Batches writes from many deliveries into one transaction each. Transient
//! database errors are retried with backoff while the deliveries wait
//! unacked (never requeued, never dead-lettered); a permanent error is
//! narrowed down to the job that causes it.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use crate::files::FileStore;
use crate::store::cutouts::{write_stamps, StampJob, StampsWritten};
use crate::store::outage::{component, Outage};
use crate::store::retry::{retry, Backoff, Gave};
use crate::store::{write_batch, StoreError, WriteJob, Written};

/// A kind of job written many at a time in one transaction.
#[async_trait::async_trait]
pub trait Batch: Send + Sync + 'static {
    type Job: Send + Sync + 'static;
    type Out: Default + Send + 'static;
    /// The name its database outages are logged under.
    const COMPONENT: &'static str;
    /// Writes all `jobs` in one transaction; one output per job, in order.
    /// Must be safe to call again with the same jobs after an error.
    async fn write(&self, jobs: &[Self::Job]) -> Result<Vec<Self::Out>, StoreError>;
}

/// The worker's archival rows (sdss, ls, ps1).
pub struct ArchivalBatch(pub DatabaseConnection);

#[async_trait::async_trait]
impl Batch for ArchivalBatch {
    type Job = WriteJob;
    type Out = Written;
    const COMPONENT: &'static str = component::WORKER;
    async fn write(&self, jobs: &[WriteJob]) -> Result<Vec<Written>, StoreError> {
        write_batch(&self.0, jobs).await
    }
}

/// Alert stamps drawn from cutouts, with their files.
pub struct StampBatch {
    pub db: DatabaseConnection,
    pub files: FileStore,
}

#[async_trait::async_trait]
impl Batch for StampBatch {
    type Job = StampJob;
    type Out = StampsWritten;
    const COMPONENT: &'static str = component::CUTOUTS;
    async fn write(&self, jobs: &[StampJob]) -> Result<Vec<StampsWritten>, StoreError> {
        write_stamps(&self.db, &self.files, jobs).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The job can never be written (a data or integrity error).
    #[error("database refused the rows: {0}")]
    Permanent(String),
    /// The writer stopped before the job was committed.
    #[error("the writer stopped before the rows were committed")]
    Stopped,
}

type Reply<O> = oneshot::Sender<Result<O, WriteError>>;
type Queue<B> = mpsc::Receiver<(<B as Batch>::Job, Reply<<B as Batch>::Out>)>;

/// Handle to the writer tasks. Cheap to clone.
pub struct Writer<B: Batch> {
    tx: mpsc::Sender<(B::Job, Reply<B::Out>)>,
}

impl<B: Batch> Clone for Writer<B> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<B: Batch> Writer<B> {
    /// Starts `parallel` writer tasks taking up to `max_batch` jobs each.
    /// `abort` makes them give up retrying (jobs answer `Stopped`).
    pub fn spawn(batch: B, max_batch: usize, parallel: usize, abort: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(max_batch * parallel.max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        let batch = Arc::new(batch);
        // One outage for all the tasks: one line when the database goes,
        // one when it is back.
        let outage = Arc::new(Outage::new(B::COMPONENT));
        for _ in 0..parallel.max(1) {
            let (batch, rx, outage) = (batch.clone(), rx.clone(), outage.clone());
            tokio::spawn(run(batch, rx, max_batch, outage, abort.clone()));
        }
        Self { tx }
    }

    /// Commits one job (with others) and returns what its write did.
    pub async fn write(&self, job: B::Job) -> Result<B::Out, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }
}

async fn run<B: Batch>(
    batch_writer: Arc<B>,
    rx: Arc<Mutex<Queue<B>>>,
    max_batch: usize,
    outage: Arc<Outage>,
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
        let (jobs, replies): (Vec<B::Job>, Vec<Reply<B::Out>>) = batch.drain(..).unzip();
        let results = commit(&*batch_writer, &jobs, &outage, &abort).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Writes the batch, retrying transient failures until `abort`; on a
/// permanent failure, writes the jobs one by one to find the culprit.
async fn commit<B: Batch>(
    db: &B,
    jobs: &[B::Job],
    outage: &Outage,
    abort: &CancellationToken,
) -> Vec<Result<B::Out, WriteError>> {
    match commit_retrying(db, jobs, outage, abort).await {
        Ok(rows) => rows.into_iter().map(Ok).collect(),
        Err(WriteError::Permanent(reason)) if jobs.len() == 1 => {
            vec![Err(WriteError::Permanent(reason))]
        }
        Err(WriteError::Permanent(_)) => {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(
                    commit_retrying(db, std::slice::from_ref(job), outage, abort)
                        .await
                        .map(|mut rows| rows.pop().unwrap_or_default()),
                );
            }
            out
        }
        Err(WriteError::Stopped) => jobs.iter().map(|_| Err(WriteError::Stopped)).collect(),
    }
}

async fn commit_retrying<B: Batch>(
    db: &B,
    jobs: &[B::Job],
    outage: &Outage,
    abort: &CancellationToken,
) -> Result<Vec<B::Out>, WriteError> {
    retry(
        Backoff::UNTIL_STOPPED,
        Some(abort),
        StoreError::failure,
        Some(outage),
        || db.write(jobs),
    )
    .await
    .map_err(|gave| match gave {
        Gave::Up(e) => WriteError::Permanent(e.to_string()),
        Gave::Stopped => WriteError::Stopped,
    })
}
