//! A loaded, warmed-up model version with its worker pool: what a request holds while in flight.
//!
//! Holding an `Arc<Servable>` keeps the version alive; when the last one goes (registry, actor and
//! every in-flight request), the queue closes, workers finish, and the compiled model is freed on
//! a reaper thread, which then reports the version as unloaded.

use crate::error::{BackendError, ServeError};
use crate::metrics::METRICS;
use crate::runtime::{Backend, LoadSpec, LoadedModel};
#[cfg(test)]
use crate::serving::pool::ThreadSetup;
use crate::serving::pool::{Job, PoolOptions, Reply, WorkerPool};
use crate::serving::validate::ValidatedInputs;
use crate::serving::warmup;
use crate::tensor::{Signature, Tensor, TensorSpec};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Called once the version's workers have exited and its compiled model is freed.
pub type OnUnloaded = Box<dyn FnOnce() + Send>;

pub struct Servable {
    pub model: String,
    pub version: u64,
    pub signature: Signature,
    /// Runtime properties as compiled (streams, threads, precision).
    pub properties: BTreeMap<String, String>,
    /// The model's runtime-info tree (KServe REST metadata `rt_info`; see `runtime::rt_info`).
    pub rt_info: serde_json::Value,
    pool: Option<WorkerPool>,
    /// Requests between resolve and answer (queued or running).
    in_flight: AtomicUsize,
    /// The model config's `resize_images`: scale JPEG/PNG inputs to the input's height and width
    /// instead of refusing other sizes. Request preprocessing only, so a config change flips it
    /// on the serving instance instead of rebuilding it.
    resize_images: AtomicBool,
    /// Touched only on drop; the mutex makes the servable shareable across request tasks.
    teardown: Mutex<Option<Teardown>>,
}

/// What is released after the workers have exited.
struct Teardown {
    compiled: Box<dyn LoadedModel>,
    on_unloaded: OnUnloaded,
}

/// How to build the worker pool of a version.
#[derive(Clone)]
pub struct PoolSpec {
    /// Worker threads (= infer requests); 0 asks the runtime for its optimal number.
    pub nireq: usize,
    /// Jobs allowed to wait for a worker before requests are refused.
    pub queue_bound: usize,
    /// Runs first on each worker thread (tests: a worker that dies at start).
    #[cfg(test)]
    pub setup: Option<ThreadSetup>,
    /// Run requests on the receiving thread while inferences average under this (fixed-shape
    /// models only; see `serving::pool`). `None` always hands off to the worker threads.
    pub inline_limit: Option<Duration>,
    /// Dynamic batching (`serving::batcher`); its queue bound replaces `queue_bound`.
    pub batching: Option<crate::config::batching::Batching>,
}

impl Servable {
    /// Loads, compiles and warms up one version (on the samples `serving::warmup` finds valid, so
    /// the first client request does not pay for lazy initialisation). Blocking: call it on a
    /// loading thread.
    pub fn load(
        backend: &dyn Backend,
        spec: &LoadSpec,
        pool: &PoolSpec,
        on_unloaded: OnUnloaded,
    ) -> Result<Servable, BackendError> {
        let mut compiled = backend.load(spec)?;
        let signature = compiled.signature().clone();
        let workers = if pool.nireq == 0 {
            compiled.optimal_infer_requests()
        } else {
            pool.nireq
        };
        let mut executors = (0..workers)
            .map(|_| compiled.create_executor())
            .collect::<Result<Vec<_>, _>>()?;
        let samples = warmup::samples(&spec.dir, &spec.model, &signature)
            .map_err(|e| BackendError::Infer(format!("warm-up: {e}")))?;
        let all_outputs: Vec<usize> = (0..signature.outputs.len()).collect();
        let warmed = METRICS
            .warmup_inferences
            .with_label_values(&[&spec.model, &spec.version.to_string()]);
        for (index, inputs) in samples.iter().enumerate() {
            executors[0]
                .infer(inputs, &all_outputs)
                .map_err(|e| BackendError::Infer(format!("warm-up sample {index} failed: {e}")))?;
            warmed.inc();
        }
        let prefix = format!("ov-{}", spec.model.chars().take(6).collect::<String>());
        let metrics = METRICS.for_version(&spec.model, spec.version);
        // A model whose inputs can change shape per request may take a thousand times longer on
        // the next one than on the last: its past says nothing safe about blocking a thread.
        let fixed_shapes = !signature.inputs.iter().any(TensorSpec::is_dynamic);
        let pool = WorkerPool::start(
            executors,
            PoolOptions {
                thread_prefix: prefix,
                bound: pool.queue_bound.max(1),
                #[cfg(test)]
                setup: pool.setup.clone(),
                metrics: Some(metrics),
                inline_limit: pool.inline_limit.filter(|_| fixed_shapes),
                batching: pool.batching.clone(),
            },
        )
        .map_err(|e| BackendError::Runtime(format!("cannot start worker threads: {e}")))?;
        Ok(Servable {
            model: spec.model.clone(),
            version: spec.version,
            signature,
            properties: compiled.properties(),
            rt_info: crate::runtime::rt_info::read(&spec.dir),
            pool: Some(pool),
            in_flight: AtomicUsize::new(0),
            resize_images: AtomicBool::new(false),
            teardown: Mutex::new(Some(Teardown {
                compiled,
                on_unloaded,
            })),
        })
    }

    fn pool(&self) -> &WorkerPool {
        self.pool.as_ref().expect("pool lives until drop")
    }

    pub fn workers(&self) -> usize {
        self.pool().workers()
    }

    /// Worker threads that have exited while the version serves (a crash; see the watchdog).
    pub fn dead_workers(&self) -> usize {
        self.pool().dead_workers()
    }

    pub fn queue_bound(&self) -> usize {
        self.pool().bound()
    }

    pub fn queued(&self) -> usize {
        self.pool().queued()
    }

    pub fn active(&self) -> usize {
        self.pool().stats().active.load(Ordering::Relaxed)
    }

    /// Queues validated inputs; fails fast with `QueueFull` when the queue is at its bound.
    pub fn submit(
        &self,
        inputs: ValidatedInputs,
        outputs: Vec<usize>,
    ) -> Result<oneshot::Receiver<Reply>, ServeError> {
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            inputs,
            outputs,
            reply,
            enqueued: Instant::now(),
            span: tracing::Span::current(),
        };
        self.pool()
            .try_submit(job)
            .map_err(|_| ServeError::QueueFull {
                model: self.model.clone(),
                version: self.version,
                bound: self.queue_bound(),
            })?;
        Ok(receiver)
    }

    /// Runs one inference and waits for the answer without blocking the async runtime.
    pub async fn infer(
        &self,
        inputs: ValidatedInputs,
        outputs: Vec<usize>,
    ) -> Result<Vec<Tensor>, ServeError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // Decremented however the future ends, including when the client goes away.
        let _in_flight = Guard(|| {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        let (inputs, outputs) = match self.pool().try_inline(inputs, outputs) {
            Ok(reply) => return reply,
            Err(handed_back) => handed_back,
        };
        let receiver = self.submit(inputs, outputs)?;
        receiver.await.unwrap_or(Err(ServeError::ShuttingDown))
    }

    /// Requests between resolve and answer (queued or running).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether image inputs are resized to the model's size (see `serving::image`).
    pub fn resize_images(&self) -> bool {
        self.resize_images.load(Ordering::Relaxed)
    }

    /// Set by the model's actor from its config, before publishing and on every config change.
    pub fn set_resize_images(&self, resize: bool) {
        self.resize_images.store(resize, Ordering::Relaxed);
    }
}

impl Drop for Servable {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let teardown = self.teardown.get_mut().ok().and_then(Option::take);
        let workers = pool.close();
        let label = format!("{} v{}", self.model, self.version);
        // Joining may wait for a job whose client already left; never do that on the caller's
        // thread, which can be an async task.
        let reaper = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || {
                for worker in workers {
                    let _ = worker.join();
                }
                if let Some(Teardown {
                    compiled,
                    on_unloaded,
                }) = teardown
                {
                    drop(compiled);
                    crate::memory::give_memory_back();
                    tracing::debug!(version = %label, "workers joined, compiled model freed");
                    on_unloaded();
                }
            });
        if let Err(e) = reaper {
            tracing::error!(error = %e, "cannot spawn the reaper thread; the version's threads leak");
        }
    }
}

/// Runs a closure when dropped.
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
