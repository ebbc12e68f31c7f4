//! The closed-loop load harness of the tests and of the load generator (benches/loadgen.rs
//! includes this file): each client keeps one request outstanding, in a loop, until stopped or
//! until the end of a measurement window. Every answer is counted per client by its kind
//! (`v3`, `NotFound`, `error`, ...), successes' latencies go into an HDR histogram, and, for
//! tests, every response is kept in order with its times, so a test can wait for what the
//! clients saw (each answer wakes the waiters: no polling) and assert on it afterwards.
#![allow(dead_code)]

use hdrhistogram::Histogram;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fail-safe of [`Load::wait_until`]: what a test waits for is the answers; this only ends a
/// test whose server hung, even on a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What one request came to.
pub trait Outcome: Send + 'static {
    /// The key the tally counts it under, e.g. `v3` for an answer from version 3.
    fn kind(&self) -> Cow<'static, str>;
    /// What went wrong, or None for a success (whose latency the histogram records).
    fn failure(&self) -> Option<String>;
}

/// The load generator's outcome: answered, or the error's text.
impl Outcome for Result<(), String> {
    fn kind(&self) -> Cow<'static, str> {
        Cow::Borrowed(if self.is_ok() { "ok" } else { "error" })
    }

    fn failure(&self) -> Option<String> {
        self.as_ref().err().cloned()
    }
}

/// One client of the loop: its own connection and its own request.
pub trait Client: Send + 'static {
    type Outcome: Outcome;
    /// Sends this client's request number `n` and judges the answer.
    fn call(&mut self, n: u32) -> impl Future<Output = Self::Outcome> + Send;
}

/// The measurement window: answers completing in `[start, end]` count; clients stop at `end`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    /// `warmup` from now, for `duration`.
    pub fn after(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + duration,
        }
    }

    fn contains(&self, at: Instant) -> bool {
        self.start <= at && at <= self.end
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// Without one, clients run until [`Load::stop`] and every answer counts.
    pub window: Option<Window>,
    /// A pause after each answer: keeps many clients from starving a small machine's server.
    pub pace: Option<Duration>,
    /// Keep every response (tests) besides the tallies (all the load generator needs).
    pub keep_records: bool,
}

impl Settings {
    /// What tests use: every response kept, no window.
    pub fn recorded() -> Settings {
        Settings {
            keep_records: true,
            ..Settings::default()
        }
    }
}

/// One response, as the client saw it.
#[derive(Clone, Debug)]
pub struct Record<O> {
    pub client: usize,
    pub sent: Instant,
    pub done: Instant,
    pub outcome: O,
}

/// A client's (or, merged, a run's) counts.
pub struct Tally {
    /// Latencies of the successes, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Answers per kind, successes included.
    pub kinds: BTreeMap<Cow<'static, str>, u64>,
    pub failures: u64,
    pub first_failure: Option<String>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            // 1 ns .. 60 s at 3 significant digits.
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            kinds: BTreeMap::new(),
            failures: 0,
            first_failure: None,
        }
    }
}

impl Tally {
    pub fn record(&mut self, latency: Duration, outcome: &impl Outcome) {
        *self.kinds.entry(outcome.kind()).or_default() += 1;
        match outcome.failure() {
            None => self.latency_ns.saturating_record(latency.as_nanos() as u64),
            Some(failure) => {
                self.failures += 1;
                self.first_failure.get_or_insert(failure);
            }
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.latency_ns
            .add(&other.latency_ns)
            .expect("same histogram bounds");
        for (kind, n) in &other.kinds {
            *self.kinds.entry(kind.clone()).or_default() += n;
        }
        self.failures += other.failures;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
    }

    /// Answers that were not failures.
    pub fn successes(&self) -> u64 {
        self.latency_ns.len()
    }

    /// `kind: count, ...`
    pub fn counts(&self) -> String {
        let counts: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        counts.join(", ")
    }
}

/// `n=… p50=…µs p99=…µs max=…µs` of a nanosecond histogram.
pub fn percentiles(latency_ns: &Histogram<u64>) -> String {
    let us = |ns: u64| ns / 1000;
    format!(
        "n={} p50={}µs p99={}µs max={}µs",
        latency_ns.len(),
        us(latency_ns.value_at_quantile(0.5)),
        us(latency_ns.value_at_quantile(0.99)),
        us(latency_ns.max())
    )
}

/// Latencies (sent → done) of `records`, whatever their outcome.
pub fn latencies<'a, O: 'a>(records: impl IntoIterator<Item = &'a Record<O>>) -> Histogram<u64> {
    let mut histogram = Tally::default().latency_ns;
    for r in records {
        histogram.saturating_record(r.done.duration_since(r.sent).as_nanos() as u64);
    }
    histogram
}

struct Shared<O> {
    settings: Settings,
    labels: Vec<String>,
    stop: AtomicBool,
    tallies: Vec<Mutex<Tally>>,
    records: Mutex<Vec<Record<O>>>,
    answered: tokio::sync::Notify,
}

impl<O: Outcome> Shared<O> {
    fn new(settings: Settings, labels: Vec<String>) -> Shared<O> {
        Shared {
            settings,
            tallies: labels.iter().map(|_| Mutex::default()).collect(),
            labels,
            stop: AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
            answered: tokio::sync::Notify::new(),
        }
    }

    /// Whether a client sends another request now.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && self.settings.window.is_none_or(|w| Instant::now() < w.end)
    }

    fn record(&self, client: usize, sent: Instant, outcome: O) {
        let done = Instant::now();
        if self.settings.window.is_none_or(|w| w.contains(done)) {
            self.tallies[client]
                .lock()
                .unwrap()
                .record(done - sent, &outcome);
        }
        if self.settings.keep_records {
            self.records.lock().unwrap().push(Record {
                client,
                sent,
                done,
                outcome,
            });
        }
        self.answered.notify_waiters();
    }
}

/// Closed-loop clients, one request outstanding each.
pub struct Load<O> {
    shared: Arc<Shared<O>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl<O: Outcome> Load<O> {
    /// One tokio task per (label, client); call from inside a tokio runtime.
    pub fn spawn<C: Client<Outcome = O>>(settings: Settings, clients: Vec<(String, C)>) -> Load<O> {
        let (labels, clients): (Vec<_>, Vec<_>) = clients.into_iter().unzip();
        let shared = Arc::new(Shared::new(settings, labels));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(index, mut client)| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut n = 0u32;
                    while shared.running() {
                        let sent = Instant::now();
                        let outcome = client.call(n).await;
                        shared.record(index, sent, outcome);
                        n = n.wrapping_add(1);
                        if let Some(pace) = shared.settings.pace {
                            tokio::time::sleep(pace).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            shared,
            tasks,
            threads: Vec::new(),
        }
    }

    /// One thread per (label, blocking client), e.g. an OpenVINO infer request each.
    pub fn spawn_threads<F>(settings: Settings, clients: Vec<(String, F)>) -> Load<O>
    where
        F: FnMut(u32) -> O + Send + 'static,
    {
        let (labels, clients): (Vec<_>, Vec<_>) = clients.into_iter().unzip();
        let shared = Arc::new(Shared::new(settings, labels));
        let threads = clients
            .into_iter()
            .enumerate()
            .map(|(index, mut call)| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut n = 0u32;
                    while shared.running() {
                        let sent = Instant::now();
                        let outcome = call(n);
                        shared.record(index, sent, outcome);
                        n = n.wrapping_add(1);
                        if let Some(pace) = shared.settings.pace {
                            std::thread::sleep(pace);
                        }
                    }
                })
            })
            .collect();
        Load {
            shared,
            tasks: Vec::new(),
            threads,
        }
    }

    pub fn label(&self, client: usize) -> &str {
        &self.shared.labels[client]
    }

    pub fn clients(&self) -> usize {
        self.shared.labels.len()
    }

    /// Runs `f` on the responses so far (kept with [`Settings::keep_records`]).
    pub fn with_records<R>(&self, f: impl FnOnce(&[Record<O>]) -> R) -> R {
        f(&self.shared.records.lock().unwrap())
    }

    /// The merged tally of the clients `which` selects by label.
    pub fn tally_of(&self, which: impl Fn(&str) -> bool) -> Tally {
        let mut total = Tally::default();
        for (label, tally) in self.shared.labels.iter().zip(&self.shared.tallies) {
            if which(label) {
                total.merge(&tally.lock().unwrap());
            }
        }
        total
    }

    pub fn tally(&self) -> Tally {
        self.tally_of(|_| true)
    }

    /// One line per client: its label and its answers per kind.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for (label, tally) in self.shared.labels.iter().zip(&self.shared.tallies) {
            let _ = writeln!(text, "  {label:<16} {}", tally.lock().unwrap().counts());
        }
        text
    }

    /// Waits for answers until `done` holds of the responses so far; panics with the summary
    /// after [`DEADLINE`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Record<O>]) -> bool) {
        self.wait(what, || self.with_records(&done)).await
    }

    /// [`Load::wait_until`] on the merged tally (no records needed).
    pub async fn wait_tally(&self, what: &str, done: impl Fn(&Tally) -> bool) {
        self.wait(what, || done(&self.tally())).await
    }

    async fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let mut answered = std::pin::pin!(self.shared.answered.notified());
            // Registered before looking, so an answer in between still wakes us.
            answered.as_mut().enable();
            if done() {
                return;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                panic!("timed out waiting for: {what}\n{}", self.summary());
            }
        }
    }

    /// Stops the clients after their current request and waits for them.
    pub async fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join().await;
    }

    /// Waits for the clients to end by themselves (at the window's end); the merged tally.
    pub async fn finish(mut self) -> Tally {
        self.join().await;
        self.tally()
    }

    /// [`Load::finish`] for clients on threads, outside any async runtime.
    pub fn finish_threads(mut self) -> Tally {
        for thread in std::mem::take(&mut self.threads) {
            thread.join().expect("a load client panicked");
        }
        self.tally()
    }

    async fn join(&mut self) {
        for task in self.tasks.drain(..) {
            task.await.expect("a load client panicked");
        }
    }
}

impl<O> Drop for Load<O> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
