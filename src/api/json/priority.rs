//! The CPU priority of the threads that decode large JSON bodies: as low as Linux allows while
//! the decode gets CPU time, raised step by step while it is starved.
//!
//! A large body's decode is one CPU-bound thread for about a second per 100 MB. Whatever runs
//! it, small requests woken on the same core wait for it. On the 2-vCPU dev VM a busy loop in
//! *another process* (no server involved; `scripts/json_memory.py --bodies hog`) kept small
//! requests' p99 within 2× idle in 0 of 6 windows at nice 10 and 5 of 6 at nice 19 (`SCHED_IDLE`:
//! 0 of 6); the server's own 100 MB decodes, 8 each in alternation: 1 of 8 at a fixed nice 10,
//! 6 of 8 starting at nice 19 (docs/json-memory.md). But a low priority alone starves the decode
//! when other work saturates the cores: `SCHED_IDLE` (weight 3) left the test suite's 20.8 MB
//! body undecoded for minutes under `stress-ng`, and nice 19 (weight 15 against a nice-0
//! thread's 1,024) gets ~1.5% of a contended core.
//!
//! Hence [`Levels`]: a decode starts at the lowest level and a watchdog raises it one level each
//! time the decode spent most of a window waiting for a CPU rather than running (the kernel's
//! `/proc/self/task/TID/schedstat` counts both), up to the process's own priority. Under
//! `stress-ng --cpu 2` a 100 MB decode then took 2.8-3.4 s instead of 9.7-13.4 s at a fixed
//! nice 10. Raising a thread's priority needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it
//! (`LimitNICE=+0` in config/vinoserve.service); without either, the decode threads stay at one
//! fixed level, nice 10 (a tenth of a contended core).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the watchdog looks at running decodes.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// The shortest window a decision is based on.
const WINDOW: Duration = Duration::from_millis(250);
/// A decode that ran for less than this share of the time it was runnable is starved.
const STARVED_BELOW: f64 = 0.25;

/// Nice offsets from the process's nice value, lowest priority first. Capped at 19.
const STEPS: [i32; 3] = [19, 10, 0];
/// The one level used when priorities cannot be raised again (no privilege, no RLIMIT_NICE).
const FIXED_OFFSET: i32 = 10;

/// A thread's kernel id.
pub type Tid = libc::pid_t;

/// The nice values decoding threads move through, from the process's own nice value.
#[derive(Clone, Debug, PartialEq)]
pub struct Levels {
    /// Nice values, lowest priority first; one value when raising is not allowed.
    pub nice: Vec<i32>,
}

impl Levels {
    /// Nice values from `base` (the process's), escalating only if `can_raise`.
    pub fn new(base: i32, can_raise: bool) -> Levels {
        let at = |offset: i32| (base + offset).min(19);
        let mut nice: Vec<i32> = if can_raise {
            STEPS.iter().map(|&offset| at(offset)).collect()
        } else {
            vec![at(FIXED_OFFSET)]
        };
        nice.dedup();
        Levels { nice }
    }

    /// Puts the calling thread at the lowest level.
    pub fn lower(&self, tid: Tid) {
        let _ = set_nice(tid, self.nice[0]);
    }
}

/// This thread's kernel id.
pub fn current_tid() -> Tid {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A thread's nice value (Linux keeps one per thread).
pub fn nice_of(tid: Tid) -> i32 {
    // SAFETY: getpriority only reads the thread's scheduling attributes. It returns the nice
    // value itself (-1 is a valid value; errors cannot happen for a live thread of ours).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
}

/// Sets a thread's nice value (raising the priority needs CAP_SYS_NICE or RLIMIT_NICE).
pub fn set_nice(tid: Tid, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority on one of this process's threads changes only its nice value.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a thread of this process, once made nicer, may be given back the nice value `base`:
/// with CAP_SYS_NICE, or when RLIMIT_NICE allows it (the lowest nice it permits is 20 minus
/// the limit). Asked without changing any thread.
pub fn can_raise_priority(base: i32) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into `limit`.
    let allowed_by_limit = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0
        && 20 - (limit.rlim_cur.min(40) as i32) <= base;
    allowed_by_limit || has_cap_sys_nice()
}

/// Whether CAP_SYS_NICE is in this process's effective capabilities (`/proc/self/status`).
fn has_cap_sys_nice() -> bool {
    const CAP_SYS_NICE: u32 = 23;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0)
}

/// Time a thread spent running and waiting for a CPU, from `/proc/self/task/TID/schedstat`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTimes {
    pub running_ns: u64,
    pub waiting_ns: u64,
}

impl CpuTimes {
    pub fn of(tid: Tid) -> Option<CpuTimes> {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        Some(CpuTimes {
            running_ns: fields.next()?.ok()?,
            waiting_ns: fields.next()?.ok()?,
        })
    }
}

/// Whether a thread that went from `before` to `now` was starved: runnable most of the time
/// but given the CPU for less than [`STARVED_BELOW`] of it.
pub fn starved(before: CpuTimes, now: CpuTimes) -> bool {
    let ran = now.running_ns.saturating_sub(before.running_ns) as f64;
    let waited = now.waiting_ns.saturating_sub(before.waiting_ns) as f64;
    ran + waited > 0.0 && ran / (ran + waited) < STARVED_BELOW
}

/// One decode in progress, as the watchdog follows it.
struct Running {
    level: usize,
    since: Instant,
    times: CpuTimes,
}

/// Raises the level of decodes that are starved; one thread for all decoding threads, awake
/// only while a decode runs.
pub struct Watchdog {
    levels: Levels,
    running: Mutex<HashMap<Tid, Running>>,
    wake: crossbeam_channel::Sender<()>,
}

impl Watchdog {
    /// The process's watchdog for `levels` (the first call's), started on first use.
    pub fn shared(levels: &Levels) -> Arc<Watchdog> {
        static SHARED: OnceLock<Arc<Watchdog>> = OnceLock::new();
        SHARED
            .get_or_init(|| Watchdog::start(levels.clone()))
            .clone()
    }

    pub fn start(levels: Levels) -> Arc<Watchdog> {
        let (wake, woken) = crossbeam_channel::unbounded();
        let watchdog = Arc::new(Watchdog {
            levels,
            running: Mutex::new(HashMap::new()),
            wake,
        });
        if watchdog.levels.nice.len() > 1 {
            let watching = Arc::downgrade(&watchdog);
            std::thread::Builder::new()
                .name("json-decode-watch".into())
                .spawn(move || {
                    while woken.recv().is_ok() {
                        // Look every CHECK_EVERY while something runs.
                        loop {
                            let Some(watchdog) = watching.upgrade() else {
                                return;
                            };
                            if !watchdog.check() {
                                break;
                            }
                            drop(watchdog);
                            std::thread::sleep(CHECK_EVERY);
                        }
                    }
                })
                .expect("spawn the JSON decoding watchdog");
        }
        watchdog
    }

    /// Runs `job` on the calling thread as a watched decode, then puts the thread back at the
    /// lowest level.
    pub fn watch<T>(&self, job: impl FnOnce() -> T) -> T {
        let tid = current_tid();
        if self.levels.nice.len() > 1 {
            let times = CpuTimes::of(tid).unwrap_or_default();
            self.lock().insert(
                tid,
                Running {
                    level: 0,
                    since: Instant::now(),
                    times,
                },
            );
            let _ = self.wake.send(());
        }
        let result = job();
        if self.levels.nice.len() > 1 && self.lock().remove(&tid).is_some_and(|r| r.level > 0) {
            self.levels.lower(tid);
        }
        result
    }

    /// One look at every running decode; whether any runs.
    fn check(&self) -> bool {
        let mut running = self.lock();
        for (&tid, decode) in running.iter_mut() {
            if decode.since.elapsed() < WINDOW || decode.level + 1 >= self.levels.nice.len() {
                continue;
            }
            let Some(now) = CpuTimes::of(tid) else {
                continue;
            };
            if starved(decode.times, now) {
                decode.level += 1;
                let nice = self.levels.nice[decode.level];
                if let Err(e) = set_nice(tid, nice) {
                    tracing::debug!(error = %e, nice, "cannot raise a JSON decode's priority");
                }
            }
            decode.since = Instant::now();
            decode.times = now;
        }
        !running.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Tid, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_go_from_nicest_to_the_process_priority_or_stay_at_nice_10() {
        assert_eq!(Levels::new(0, true).nice, vec![19, 10, 0]);
        assert_eq!(Levels::new(5, true).nice, vec![19, 15, 5]);
        assert_eq!(Levels::new(15, true).nice, vec![19, 15]);
        assert_eq!(Levels::new(0, false).nice, vec![10]);
        assert_eq!(Levels::new(12, false).nice, vec![19]);
    }

    #[test]
    fn a_thread_that_mostly_waits_for_the_cpu_is_starved() {
        let at = |running_ns, waiting_ns| CpuTimes {
            running_ns,
            waiting_ns,
        };
        assert!(starved(at(0, 0), at(10, 90)));
        assert!(!starved(at(0, 0), at(30, 70)));
        assert!(!starved(at(100, 100), at(200, 100)));
        // Asleep (neither running nor waiting): not starved.
        assert!(!starved(at(5, 5), at(5, 5)));
    }

    /// The prediction (limits and capabilities) agrees with what the kernel then allows.
    #[test]
    fn whether_a_priority_can_be_given_back_is_predicted_right() {
        std::thread::spawn(|| {
            let tid = current_tid();
            let before = nice_of(tid);
            let predicted = can_raise_priority(before);
            set_nice(tid, 19).unwrap();
            assert_eq!(set_nice(tid, before).is_ok(), predicted || before == 19);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_reads_its_own_cpu_times() {
        let tid = current_tid();
        let before = CpuTimes::of(tid).expect("schedstat");
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(5) {
            std::hint::black_box(0u64);
        }
        assert!(CpuTimes::of(tid).unwrap().running_ns > before.running_ns);
    }

    /// A decode sharing one CPU with busy nice-0 threads is raised until it gets its share,
    /// and is put back at the lowest level afterwards.
    #[test]
    fn a_starved_decode_is_raised_then_lowered_after() {
        let base = nice_of(current_tid());
        if !can_raise_priority(base) {
            // Neither CAP_SYS_NICE nor RLIMIT_NICE: the fixed level is covered above.
            return;
        }
        let levels = Levels::new(base, true);
        let watchdog = Watchdog::start(levels.clone());
        let cpu = first_allowed_cpu();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Two busy nice-0 threads on the decode's CPU.
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_to(cpu);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::black_box(0u64);
                    }
                })
            })
            .collect();
        let decode = {
            let (watchdog, levels) = (watchdog.clone(), levels.clone());
            std::thread::spawn(move || {
                pin_to(cpu);
                let tid = current_tid();
                levels.lower(tid);
                let highest = watchdog.watch(|| {
                    // Busy until raised to the process's priority (the event waited for);
                    // the fail-safe only bounds a broken watchdog.
                    let give_up = Instant::now() + Duration::from_secs(120);
                    while nice_of(tid) != base && Instant::now() < give_up {
                        std::hint::black_box(0u64);
                    }
                    nice_of(tid)
                });
                (highest, nice_of(tid))
            })
        };
        let (highest, after) = decode.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for hog in hogs {
            hog.join().unwrap();
        }
        assert_eq!(
            highest, base,
            "raised to the process's priority while starved"
        );
        assert_eq!(after, levels.nice[0], "lowest again after the decode");
    }

    fn first_allowed_cpu() -> usize {
        // SAFETY: sched_getaffinity fills a cpu_set_t the size it is given.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (0..libc::CPU_SETSIZE as usize)
                .find(|&cpu| libc::CPU_ISSET(cpu, &set))
                .unwrap()
        }
    }

    fn pin_to(cpu: usize) {
        // SAFETY: sched_setaffinity(0, ...) pins the calling thread to a CPU it may use.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
