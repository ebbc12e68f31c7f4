//! Worker threads that own OpenVINO infer requests, fed by one bounded crossbeam queue.
//!
//! Inference never runs on an async task: a request is decoded and validated on the transport's
//! runtime, handed over as a [`Job`], and answered through a oneshot channel.

use crate::error::{BackendError, ServeError};
use crate::metrics::VersionMetrics;
use crate::model::validate::ValidatedInputs;
use crate::runtime::Executor;
use crate::tensor::Tensor;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

pub type Reply = Result<Vec<Tensor>, ServeError>;

/// One inference to run: validated inputs, which outputs to return, where to answer.
pub struct Job {
    pub inputs: ValidatedInputs,
    pub outputs: Vec<usize>,
    pub reply: oneshot::Sender<Reply>,
    pub enqueued: Instant,
}

/// Called by each worker thread before it takes jobs (placement: CPU pinning, naming).
pub type ThreadSetup = Arc<dyn Fn(usize) + Send + Sync>;

/// Counters a pool keeps for status and metrics.
#[derive(Default)]
pub struct PoolStats {
    /// Jobs being inferred right now.
    pub active: AtomicUsize,
    /// Jobs dropped unanswered because their client had gone away.
    pub skipped: AtomicUsize,
}

pub struct WorkerPool {
    sender: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    bound: usize,
    stats: Arc<PoolStats>,
}

impl WorkerPool {
    /// Starts one named thread per executor. `bound` is how many jobs may wait for a worker.
    pub fn start(
        thread_prefix: &str,
        executors: Vec<Box<dyn Executor>>,
        bound: usize,
        setup: Option<ThreadSetup>,
        metrics: Option<VersionMetrics>,
    ) -> std::io::Result<WorkerPool> {
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(bound);
        let stats = Arc::new(PoolStats::default());
        let mut workers = Vec::with_capacity(executors.len());
        for (index, executor) in executors.into_iter().enumerate() {
            let receiver = receiver.clone();
            let stats = stats.clone();
            let setup = setup.clone();
            let metrics = metrics.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{thread_prefix}-{index}"))
                .spawn(move || {
                    if let Some(setup) = setup {
                        setup(index);
                    }
                    work(executor, receiver, &stats, metrics.as_ref())
                })?;
            workers.push(handle);
        }
        Ok(WorkerPool {
            sender: Some(sender),
            workers,
            bound,
            stats,
        })
    }

    /// Queues a job, or hands it back at once when `bound` jobs are already waiting.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        let sender = self.sender.as_ref().expect("sender lives until drop");
        sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
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

    pub fn stats(&self) -> &Arc<PoolStats> {
        &self.stats
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

fn work(
    mut executor: Box<dyn Executor>,
    jobs: Receiver<Job>,
    stats: &PoolStats,
    metrics: Option<&VersionMetrics>,
) {
    while let Ok(job) = jobs.recv() {
        if job.reply.is_closed() {
            // The client gave up (disconnect or deadline): running it would serve nobody.
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            executor.infer(&job.inputs, &job.outputs)
        }));
        stats.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(m) = metrics {
            m.wait_us
                .observe(started.duration_since(job.enqueued).as_secs_f64() * 1e6);
            m.inference_us
                .observe(started.elapsed().as_secs_f64() * 1e6);
        }
        let reply = match result {
            Ok(outputs) => outputs.map_err(ServeError::from),
            Err(_) => Err(ServeError::Backend(BackendError::Infer(
                "the inference worker panicked".into(),
            ))),
        };
        let _ = job.reply.send(reply);
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

    fn job(x: f32) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let t = tensor_from_slice(DataType::F32, vec![1], &[x]);
        let inputs =
            crate::model::validate::validate_inputs("m", &fake_signature(), vec![("x".into(), t)])
                .unwrap();
        (
            Job {
                inputs,
                outputs: vec![0],
                reply,
                enqueued: Instant::now(),
            },
            rx,
        )
    }

    #[test]
    fn full_queue_hands_the_job_back() {
        let backend = FakeBackend::default();
        backend.control.close_gate();
        let pool = WorkerPool::start("t", executors(&backend, 1), 2, None, None).unwrap();
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
        let pool = WorkerPool::start("t", executors(&backend, 2), 8, None, None).unwrap();
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
        let pool = WorkerPool::start("t", executors(&backend, 2), 4, Some(setup), None).unwrap();
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
        let pool = WorkerPool::start("t", executors(&backend, 1), 4, None, None).unwrap();
        let (j1, r1) = job(1.0);
        pool.try_submit(j1).map_err(|_| ()).unwrap();
        while backend.control.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let (j2, r2) = job(2.0);
        pool.try_submit(j2).map_err(|_| ()).unwrap();
        drop(r2);
        let stats = pool.stats().clone();
        let handles = pool.close();
        backend.control.open_gate();
        for h in handles {
            h.join().unwrap();
        }
        assert!(r1.blocking_recv().unwrap().is_ok());
        assert_eq!(stats.skipped.load(Ordering::SeqCst), 1);
        assert_eq!(backend.control.inferences.load(Ordering::SeqCst), 1);
    }
}
