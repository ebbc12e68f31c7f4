//! Where REST JSON bodies are decoded: off the REST threads, and large ones at a lower CPU
//! priority.
//!
//! Decoding a 100 MB body keeps a core busy for about a second. On actix's blocking pool it
//! competes as an equal with the REST threads answering other clients; on a host with few cores
//! those clients' latency then follows the decode. Bodies of [`LOW_PRIORITY_FROM`] or more are
//! decoded on threads of their own, whose priority [`super::priority`] keeps as low as it can
//! while they get CPU time and raises while they are starved (Linux sets nice values per
//! thread). Smaller bodies stay on the blocking pool at normal priority, where a lower priority
//! would only slow them under load.

use super::priority::{self, Levels, Watchdog};
use crossbeam_channel::{unbounded, Sender};
use std::sync::OnceLock;

/// Bodies from this size on are decoded at low priority.
pub const LOW_PRIORITY_FROM: usize = 1 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// Runs `decode` (of a `body_len`-byte body) off the REST threads; `None` if it panicked.
pub async fn decode<T: Send + 'static>(
    body_len: usize,
    decode: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if body_len < LOW_PRIORITY_FROM {
        return actix_web::web::block(decode).await.ok();
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(decode());
    });
    // The threads live as long as the process: a send only fails if they all panicked.
    pool().send(job).ok()?;
    rx.await.ok()
}

/// The low-priority threads (as many as CPUs, at most 4), started on first use.
fn pool() -> &'static Sender<Job> {
    static POOL: OnceLock<Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = unbounded::<Job>();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("json-decode-{i}"))
                .spawn(move || {
                    let levels = levels_here();
                    let watchdog = Watchdog::shared(&levels);
                    levels.lower(priority::current_tid());
                    for job in rx {
                        // A panicking decode drops its answer channel: the request gets an error.
                        let job = std::panic::AssertUnwindSafe(job);
                        let _ = watchdog.watch(|| std::panic::catch_unwind(job));
                    }
                })
                .expect("spawn a JSON decoding thread");
        }
        tx
    })
}

/// The levels for threads started by the calling thread, from its nice value.
fn levels_here() -> Levels {
    let base = priority::nice_of(priority::current_tid());
    Levels::new(base, priority::can_raise_priority(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn small_and_large_bodies_are_decoded_and_a_panic_is_an_error() {
        assert_eq!(decode(10, || 7).await, Some(7));
        assert_eq!(decode(LOW_PRIORITY_FROM, || 8).await, Some(8));
        let panicked: Option<u8> = decode(LOW_PRIORITY_FROM, || panic!("bad decode")).await;
        assert_eq!(panicked, None);
        // The thread that caught the panic still decodes.
        assert_eq!(decode(LOW_PRIORITY_FROM, || 9).await, Some(9));
    }

    #[actix_web::test]
    async fn large_bodies_are_decoded_at_a_lower_priority() {
        let nice = || priority::nice_of(priority::current_tid());
        // Small bodies: the blocking pool's threads keep the process's nice value.
        assert_eq!(decode(10, nice).await, Some(nice()));
        // Large ones: the lowest level (and the normal policy, which never starves them).
        let their_nice = decode(LOW_PRIORITY_FROM, nice).await.unwrap();
        assert_eq!(their_nice, levels_here().nice[0]);
        assert!(their_nice > nice() || nice() == 19);
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = decode(LOW_PRIORITY_FROM, || unsafe { libc::sched_getscheduler(0) }).await;
        assert_eq!(policy, Some(libc::SCHED_OTHER));
    }
}
