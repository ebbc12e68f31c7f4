//! The infer requests (executors) of one model version, the worker threads that run queued jobs
//! on them, and the inline path that skips the hand-off for short inferences.
//!
//! Inference normally never runs on an async task: a request is decoded and validated on the
//! transport's runtime, handed over as a [`Job`] through one bounded crossbeam queue, run by a
//! worker thread, and answered through a oneshot channel. That hand-off costs two thread
//! wake-ups per request, which on a busy or virtualised host is far more than a tiny model's
//! inference (measured: ~70 µs of a 155 µs round trip on a model that computes in 6 µs). So a
//! version whose recent inferences average under the pool's inline limit runs a request on the
//! thread that received it, when an executor is idle and nothing is queued: the limit keeps
//! that thread's stall within what an async runtime tolerates between awaits.

use crate::config::batching::Batching;
use crate::error::{BackendError, ServeError};
use crate::metrics::VersionMetrics;
use crate::runtime::Executor;
use crate::serving::batcher;
use crate::serving::validate::ValidatedInputs;
use crate::tensor::Tensor;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub type Reply = Result<Vec<Tensor>, ServeError>;

/// One inference to run: validated inputs, which outputs to return, where to answer.
pub struct Job {
    pub inputs: ValidatedInputs,
    pub outputs: Vec<usize>,
    pub reply: oneshot::Sender<Reply>,
    pub enqueued: Instant,
    /// The request's span, entered by the worker thread while it runs the inference.
    pub span: tracing::Span,
}

/// Runs first on each worker thread. A test hook only (a worker that dies at start), so it
/// does not exist in the server.
#[cfg(test)]
pub type ThreadSetup = Arc<dyn Fn(usize) + Send + Sync>;

/// Counters a pool keeps for status and metrics.
#[derive(Default)]
pub struct PoolStats {
    /// Jobs being inferred right now.
    pub active: AtomicUsize,
    /// Jobs dropped unanswered because their client had gone away.
    pub skipped: AtomicUsize,
}

/// No inference measured yet: the inline path stays closed until one has been.
const UNMEASURED: u64 = u64::MAX;

/// What the worker threads and the inline path share.
struct Shared {
    /// Executors not running an inference. A worker thread takes one per job (waiting on
    /// `returned` while the inline path holds them); the inline path only takes an idle one.
    idle: Mutex<Vec<Box<dyn Executor>>>,
    returned: Condvar,
    stats: PoolStats,
    metrics: Option<VersionMetrics>,
    /// Requests run inline only while `recent_ns` is under this; `None` turns the path off.
    inline_limit: Option<Duration>,
    /// Moving average (weight 1/8) of the last inferences' duration, in nanoseconds.
    recent_ns: AtomicU64,
}

impl Shared {
    fn take_blocking(&self) -> Box<dyn Executor> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(executor) = idle.pop() {
                return executor;
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn try_take(&self) -> Option<Box<dyn Executor>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, executor: Box<dyn Executor>) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(executor);
        self.returned.notify_one();
    }

    /// Whether recent inferences were short enough to run one on the requesting thread.
    fn inline_allowed(&self) -> bool {
        let recent = self.recent_ns.load(Ordering::Relaxed);
        self.inline_limit
            .is_some_and(|limit| recent != UNMEASURED && u128::from(recent) < limit.as_nanos())
    }

    fn record_duration(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(UNMEASURED - 1);
        let recent = self.recent_ns.load(Ordering::Relaxed);
        let next = if recent == UNMEASURED {
            sample
        } else {
            recent - recent / 8 + sample / 8
        };
        // A lost update between two concurrent inferences only skews an estimate.
        self.recent_ns.store(next, Ordering::Relaxed);
    }

    /// Runs one inference on `executor`, with the bookkeeping both paths share.
    fn run(
        &self,
        executor: &mut dyn Executor,
        inputs: &ValidatedInputs,
        outputs: &[usize],
        enqueued: Instant,
    ) -> Reply {
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| executor.infer(inputs, outputs)));
        let took = started.elapsed();
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.record_duration(took);
        if let Some(m) = &self.metrics {
            m.wait_us
                .observe(started.duration_since(enqueued).as_secs_f64() * 1e6);
            m.inference_us.observe(took.as_secs_f64() * 1e6);
        }
        match result {
            Ok(outputs) => outputs.map_err(ServeError::from),
            Err(_) => Err(ServeError::Backend(BackendError::Infer(
                "the inference worker panicked".into(),
            ))),
        }
    }
}

/// How to start a pool.
pub struct PoolOptions {
    /// Prefix of the worker threads' names.
    pub thread_prefix: String,
    /// Jobs allowed to wait for a worker.
    pub bound: usize,
    #[cfg(test)]
    pub setup: Option<ThreadSetup>,
    pub metrics: Option<VersionMetrics>,
    /// Inline path limit (see the module comment); `None` always hands off.
    pub inline_limit: Option<Duration>,
    /// Merge queued requests into batched inferences (`serving::batcher`); `None`: one request,
    /// one inference.
    pub batching: Option<Batching>,
}

pub struct WorkerPool {
    sender: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    bound: usize,
    shared: Arc<Shared>,
}

impl WorkerPool {
    /// Starts one named worker thread per executor.
    pub fn start(
        executors: Vec<Box<dyn Executor>>,
        options: PoolOptions,
    ) -> std::io::Result<WorkerPool> {
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(options.bound);
        let count = executors.len();
        let shared = Arc::new(Shared {
            idle: Mutex::new(executors),
            returned: Condvar::new(),
            stats: PoolStats::default(),
            metrics: options.metrics,
            // A request run inline would never join a batch.
            inline_limit: options.inline_limit.filter(|_| options.batching.is_none()),
            recent_ns: AtomicU64::new(UNMEASURED),
        });
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let receiver = receiver.clone();
            let shared = shared.clone();
            #[cfg(test)]
            let setup = options.setup.clone();
            let batching = options.batching.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{}-{index}", options.thread_prefix))
                .spawn(move || {
                    #[cfg(test)]
                    if let Some(setup) = setup {
                        setup(index);
                    }
                    match &batching {
                        Some(policy) => work_batched(receiver, &shared, policy),
                        None => work(receiver, &shared),
                    }
                })?;
            workers.push(handle);
        }
        Ok(WorkerPool {
            sender: Some(sender),
            workers,
            bound: options.bound,
            shared,
        })
    }

    /// Queues a job, or hands it back at once when `bound` jobs are already waiting.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        let sender = self.sender.as_ref().expect("sender lives until drop");
        sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }

    /// Runs the inference on this thread when the version's recent inferences were short, an
    /// executor is idle and no job is queued (so nothing overtakes a waiting request); otherwise
    /// hands the inputs back for the queue.
    pub fn try_inline(
        &self,
        inputs: ValidatedInputs,
        outputs: Vec<usize>,
    ) -> Result<Reply, (ValidatedInputs, Vec<usize>)> {
        let shared = &self.shared;
        if !shared.inline_allowed() || self.queued() > 0 {
            return Err((inputs, outputs));
        }
        let Some(mut executor) = shared.try_take() else {
            return Err((inputs, outputs));
        };
        let reply = shared.run(executor.as_mut(), &inputs, &outputs, Instant::now());
        shared.give_back(executor);
        if let Some(m) = &shared.metrics {
            m.inline.inc();
        }
        Ok(reply)
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Worker threads that have exited. Workers leave only once the queue is closed (which
    /// `close` and drop do), so on a pool still taking jobs any count above 0 means a crash.
    pub fn dead_workers(&self) -> usize {
        self.workers.iter().filter(|w| w.is_finished()).count()
    }

    pub fn queued(&self) -> usize {
        self.sender.as_ref().map_or(0, |s| s.len())
    }

    pub fn stats(&self) -> &PoolStats {
        &self.shared.stats
    }

    /// Closes the queue and returns the worker handles; the workers finish every queued job first.
    pub fn close(mut self) -> Vec<JoinHandle<()>> {
        self.sender = None;
        std::mem::take(&mut self.workers)
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Dropping the sender lets workers drain the queue and exit; they are not joined here
        // because the last owner may be an async task (see `Servable`'s drop for the join).
        self.sender = None;
    }
}

fn work(jobs: Receiver<Job>, shared: &Shared) {
    while let Ok(job) = jobs.recv() {
        if job.reply.is_closed() {
            // The client gave up (disconnect or deadline): running it would serve nobody.
            shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _request = job.span.enter();
        let mut executor = shared.take_blocking();
        let reply = shared.run(executor.as_mut(), &job.inputs, &job.outputs, job.enqueued);
        tracing::debug!(
            ok = reply.is_ok(),
            waited_us = job.enqueued.elapsed().as_micros() as u64,
            "inference on a worker thread"
        );
        // Back before answering, so the client's next request can find it idle.
        shared.give_back(executor);
        let _ = job.reply.send(reply);
    }
}

/// A worker that merges queued requests into batches (see `serving::batcher`).
fn work_batched(jobs: Receiver<Job>, shared: &Shared, policy: &Batching) {
    let mut pending = std::collections::VecDeque::new();
    loop {
        let first = match pending.pop_front() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        if first.reply.is_closed() {
            shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let batch = batcher::collect(first, &jobs, &mut pending, policy);
        run_batch(batch, shared, policy);
    }
    // The queue is closed: what is still pending runs before the worker leaves.
    for job in pending {
        run_batch(vec![job], shared, policy);
    }
}

/// Runs a batch as one inference and answers each request with its rows; a single request, or
/// outputs without the batch's rows as first dimension, run request by request.
fn run_batch(batch: Vec<Job>, shared: &Shared, policy: &Batching) {
    let mut executor = shared.take_blocking();
    // The batch's inference runs in the span of its first request.
    let span = batch[0].span.clone();
    let _request = span.enter();
    let (enqueued, wanted) = (batch[0].enqueued, batch[0].outputs.clone());
    if let Some(m) = &shared.metrics {
        m.batch_size.observe(batch.len() as f64);
        m.batch_wait_us
            .observe(enqueued.elapsed().as_secs_f64() * 1e6);
    }
    let shares = (batch.len() > 1).then(|| {
        let rows: Vec<usize> = batch
            .iter()
            .map(|j| batcher::rows(&j.inputs).unwrap_or(0))
            .collect();
        let padded = policy.padded(rows.iter().sum());
        let inputs = batcher::concatenate(&batch, padded);
        shared
            .run(executor.as_mut(), &inputs, &wanted, enqueued)
            .map(|outputs| batcher::split(outputs, &rows, padded))
    });
    match shares {
        Some(Ok(Some(shares))) => {
            shared.give_back(executor);
            for (job, outputs) in batch.into_iter().zip(shares) {
                let _ = job.reply.send(Ok(outputs));
            }
        }
        Some(Err(e)) => {
            shared.give_back(executor);
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        // One request, or outputs that cannot be split: each on its own.
        Some(Ok(None)) | None => {
            for job in batch {
                if job.reply.is_closed() {
                    continue;
                }
                let reply = shared.run(executor.as_mut(), &job.inputs, &job.outputs, job.enqueued);
                let _ = job.reply.send(reply);
            }
            shared.give_back(executor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{fake_load_spec, fake_signature, FakeBackend};
    use crate::runtime::Backend;
    use crate::tensor::{tensor_from_slice, tensor_to_vec, DataType};

    fn executors(backend: &FakeBackend, n: usize) -> Vec<Box<dyn Executor>> {
        let mut model = backend.load(&fake_load_spec("m", 1)).unwrap();
        (0..n).map(|_| model.create_executor().unwrap()).collect()
    }

    fn options(bound: usize, setup: Option<ThreadSetup>) -> PoolOptions {
        PoolOptions {
            thread_prefix: "t".into(),
            bound,
            setup,
            metrics: None,
            inline_limit: None,
            batching: None,
        }
    }

    fn job(x: f32) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let t = tensor_from_slice(DataType::F32, vec![1], &[x]);
        let inputs = crate::serving::validate::validate_inputs(
            "m",
            &fake_signature(),
            vec![("x".into(), t)],
        )
        .unwrap();
        (
            Job {
                inputs,
                outputs: vec![0],
                reply,
                enqueued: Instant::now(),
                span: tracing::Span::none(),
            },
            rx,
        )
    }

    #[test]
    fn full_queue_hands_the_job_back() {
        let backend = FakeBackend::default();
        backend.control.close_gate();
        let pool = WorkerPool::start(executors(&backend, 1), options(2, None)).unwrap();
        let (j1, r1) = job(1.0);
        pool.try_submit(j1).map_err(|_| ()).unwrap();
        // Wait until the single worker holds job 1 at the gate, so the queue itself is empty.
        while backend.control.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let (j2, r2) = job(2.0);
        let (j3, r3) = job(3.0);
        pool.try_submit(j2).map_err(|_| ()).unwrap();
        pool.try_submit(j3).map_err(|_| ()).unwrap();
        let (j4, _r4) = job(4.0);
        assert!(
            pool.try_submit(j4).is_err(),
            "a third waiting job exceeds the bound of 2"
        );
        backend.control.open_gate();
        for (rx, want) in [(r1, 2.0f32), (r2, 3.0), (r3, 4.0)] {
            let out = rx.blocking_recv().unwrap().unwrap();
            assert_eq!(tensor_to_vec::<f32>(&out[0]).unwrap(), vec![want]);
        }
    }

    #[test]
    fn close_drains_queued_jobs_before_workers_exit() {
        let backend = FakeBackend::default();
        backend.control.close_gate();
        let pool = WorkerPool::start(executors(&backend, 2), options(8, None)).unwrap();
        let receivers: Vec<_> = (0..6)
            .map(|i| {
                let (j, r) = job(i as f32);
                pool.try_submit(j).map_err(|_| ()).unwrap();
                r
            })
            .collect();
        let handles = pool.close();
        backend.control.open_gate();
        for h in handles {
            h.join().unwrap();
        }
        for (i, r) in receivers.into_iter().enumerate() {
            let out = r.blocking_recv().unwrap().unwrap();
            assert_eq!(tensor_to_vec::<f32>(&out[0]).unwrap(), vec![i as f32 + 1.0]);
        }
    }

    #[test]
    fn a_worker_that_died_is_counted() {
        let backend = FakeBackend::default();
        // Worker 1's setup panics: that thread is gone while the pool still takes jobs.
        let setup: ThreadSetup = Arc::new(|index| assert_ne!(index, 1, "simulated crash"));
        let pool = WorkerPool::start(executors(&backend, 2), options(4, Some(setup))).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while pool.dead_workers() == 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(pool.dead_workers(), 1);
        let (j, r) = job(1.0);
        pool.try_submit(j).map_err(|_| ()).unwrap();
        assert!(
            r.blocking_recv().unwrap().is_ok(),
            "the live worker still serves"
        );
        assert_eq!(pool.dead_workers(), 1);
    }

    #[test]
    fn abandoned_jobs_are_skipped() {
        let backend = FakeBackend::default();
        backend.control.close_gate();
        let pool = WorkerPool::start(executors(&backend, 1), options(4, None)).unwrap();
        let (j1, r1) = job(1.0);
        pool.try_submit(j1).map_err(|_| ()).unwrap();
        while backend.control.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let (j2, r2) = job(2.0);
        pool.try_submit(j2).map_err(|_| ()).unwrap();
        drop(r2);
        // A job the worker takes after job 2 is answered only once job 2 was dealt with.
        let (j3, r3) = job(3.0);
        pool.try_submit(j3).map_err(|_| ()).unwrap();
        backend.control.open_gate();
        assert!(r1.blocking_recv().unwrap().is_ok());
        assert!(r3.blocking_recv().unwrap().is_ok());
        assert_eq!(pool.stats().skipped.load(Ordering::SeqCst), 1);
        assert_eq!(backend.control.inferences.load(Ordering::SeqCst), 2);
    }

    /// A one-executor pool with the inline path on; `test` names its metrics (they are global).
    fn inline_pool(backend: &FakeBackend, limit: Duration, test: &str) -> WorkerPool {
        let mut options = options(4, None);
        options.inline_limit = Some(limit);
        options.metrics = Some(crate::metrics::METRICS.for_version(&format!("pool-{test}"), 1));
        WorkerPool::start(executors(backend, 1), options).unwrap()
    }

    /// Inferences the pool ran inline, as `vinoserve_inferences_inline_total` counts them.
    fn inlined(pool: &WorkerPool) -> u64 {
        pool.shared
            .metrics
            .as_ref()
            .expect("inline_pool")
            .inline
            .get()
    }

    /// One job through the queue and a worker: the pool has measured an inference.
    fn run_one_queued(pool: &WorkerPool) {
        let (j, r) = job(1.0);
        pool.try_submit(j).map_err(|_| ()).unwrap();
        r.blocking_recv().unwrap().unwrap();
    }

    fn inputs_of(x: f32) -> ValidatedInputs {
        job(x).0.inputs
    }

    #[test]
    fn inline_waits_for_a_measured_inference_then_runs_on_the_caller() {
        let backend = FakeBackend::default();
        let pool = inline_pool(&backend, Duration::from_secs(1), "measured");
        assert!(
            pool.try_inline(inputs_of(1.0), vec![0]).is_err(),
            "nothing measured yet: the first request goes to the queue"
        );
        run_one_queued(&pool);
        let caller = std::thread::current().id();
        let out = pool
            .try_inline(inputs_of(5.0), vec![0])
            .map_err(|_| ())
            .expect("a measured fast model runs inline")
            .unwrap();
        assert_eq!(tensor_to_vec::<f32>(&out[0]).unwrap(), vec![6.0]);
        assert_eq!(std::thread::current().id(), caller);
        assert_eq!(inlined(&pool), 1);
        assert_eq!(backend.control.inferences.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn inline_hands_back_when_inferences_are_slower_than_the_limit() {
        let backend = FakeBackend::default();
        let pool = inline_pool(&backend, Duration::from_nanos(1), "slow");
        run_one_queued(&pool);
        let (inputs, outputs) = pool.try_inline(inputs_of(2.0), vec![0]).unwrap_err();
        assert_eq!(outputs, vec![0]);
        assert_eq!(
            tensor_to_vec::<f32>(&inputs.tensors()[0]).unwrap(),
            vec![2.0]
        );
        assert_eq!(inlined(&pool), 0);
    }

    #[test]
    fn inline_never_takes_a_busy_executor_nor_overtakes_the_queue() {
        let backend = FakeBackend::default();
        let pool = inline_pool(&backend, Duration::from_secs(1), "busy");
        run_one_queued(&pool);
        backend.control.close_gate();
        // The only executor is held at the gate by a worker: nothing idle.
        let (j1, r1) = job(1.0);
        pool.try_submit(j1).map_err(|_| ()).unwrap();
        while backend.control.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert!(pool.try_inline(inputs_of(3.0), vec![0]).is_err());
        // A job waits in the queue: an inline run would overtake it.
        let (j2, r2) = job(2.0);
        pool.try_submit(j2).map_err(|_| ()).unwrap();
        assert!(pool.try_inline(inputs_of(3.0), vec![0]).is_err());
        backend.control.open_gate();
        assert!(r1.blocking_recv().unwrap().is_ok());
        assert!(r2.blocking_recv().unwrap().is_ok());
        assert_eq!(inlined(&pool), 0);
    }

    #[test]
    fn a_worker_waits_while_the_inline_path_holds_the_executor() {
        let backend = FakeBackend::default();
        let pool = Arc::new(inline_pool(&backend, Duration::from_secs(1), "held"));
        run_one_queued(&pool);
        backend.control.close_gate();
        let inline = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.try_inline(inputs_of(7.0), vec![0]).map_err(|_| ()))
        };
        while backend.control.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Queued while the inline run holds the pool's only executor: answered after it.
        let (j2, r2) = job(2.0);
        pool.try_submit(j2).map_err(|_| ()).unwrap();
        backend.control.open_gate();
        let out = inline.join().unwrap().expect("ran inline").unwrap();
        assert_eq!(tensor_to_vec::<f32>(&out[0]).unwrap(), vec![8.0]);
        let out = r2.blocking_recv().unwrap().unwrap();
        assert_eq!(tensor_to_vec::<f32>(&out[0]).unwrap(), vec![3.0]);
    }
}
