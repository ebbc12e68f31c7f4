//! Where REST JSON bodies are decoded: off the REST threads, and large ones at a lower CPU
//! priority.
//!
//! Decoding a 100 MB body keeps a core busy for about a second. On actix's blocking pool it
//! competes as an equal with the REST threads answering other clients; on a host with few cores
//! those clients' latency then follows the decode. Bodies of [`LOW_PRIORITY_FROM`] or more are
//! decoded on threads of their own, 10 nicer than the process (Linux sets nice values per
//! thread): CFS gives them about a tenth of a contended core's time. Not `SCHED_IDLE`, which
//! measured a little better for other clients' latency on an idle VM but starves the decode when
//! the cores are saturated (weight 3 against 1,024): under `stress-ng --cpu 2` the test suite's
//! 20.8 MB body was still undecoded after 4 minutes, and a server whose inference keeps every
//! core busy would never answer a large JSON request. Smaller bodies stay on the blocking pool at
//! normal priority, where a lower priority would only slow them under load. An unprivileged
//! thread cannot lower its nice value again, hence a pool of its own rather than a demoted
//! blocking thread.

use crossbeam_channel::{unbounded, Sender};
use std::sync::OnceLock;

/// Bodies from this size on are decoded at low priority.
pub const LOW_PRIORITY_FROM: usize = 1 << 20;

/// How much nicer than the process the large bodies' decoding threads are.
const NICER_BY: i32 = 10;

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
                    lower_priority();
                    for job in rx {
                        // A panicking decode drops its answer channel: the request gets an error.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("spawn a JSON decoding thread");
        }
        tx
    })
}

/// This thread's nice value (Linux: per thread).
#[cfg(target_os = "linux")]
fn nice() -> i32 {
    // SAFETY: gettid and getpriority only read this thread's scheduling attributes.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Makes the calling thread [`NICER_BY`] nicer than it is.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's id changes only the calling thread's nice value
    // (raising it needs no privilege).
    unsafe {
        let target = (nice() + NICER_BY).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, target) != 0 {
            tracing::debug!("cannot lower the JSON decoding threads' priority");
        }
    }
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

    #[cfg(target_os = "linux")]
    #[actix_web::test]
    async fn large_bodies_are_decoded_at_a_lower_priority() {
        // Small bodies: the blocking pool's threads keep the process's nice value.
        assert_eq!(decode(10, nice).await, Some(nice()));
        // Large ones: 10 nicer (and the normal policy, which never starves them).
        let their_nice = decode(LOW_PRIORITY_FROM, nice).await.unwrap();
        assert_eq!(their_nice, (nice() + NICER_BY).min(19));
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = decode(LOW_PRIORITY_FROM, || unsafe { libc::sched_getscheduler(0) }).await;
        assert_eq!(policy, Some(libc::SCHED_OTHER));
    }
}
