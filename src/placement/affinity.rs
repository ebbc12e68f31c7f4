//! The two kernel calls placement rests on: the CPU mask a worker process starts with, and the
//! NUMA memory policy it sets before OpenVINO allocates anything.

use std::io;

/// CPUs this process may run on (its affinity mask), ascending.
pub fn current_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Restricts the calling process to `cpus`. Only async-signal-safe work, so it may run between
/// fork and exec.
pub fn set_cpus(cpus: &[usize]) -> io::Result<()> {
    set_thread_cpus(0, cpus)
}

/// Restricts every thread of this process to `cpus` (the mask is per thread: threads started
/// before a change keep the old one otherwise). Threads that end meanwhile are skipped.
pub fn set_all_threads(cpus: &[usize]) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        match set_thread_cpus(tid, cpus) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            other => other?,
        }
    }
    Ok(())
}

/// `sched_setaffinity` of one thread (0: the calling one).
fn set_thread_cpus(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as above; CPU_SET ignores nothing silently because callers pass planned PU
    // indexes, which are below CPU_SETSIZE on any machine hwloc reports.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Binds this process's future allocations to NUMA node `node` (MPOL_BIND), as
/// `numactl --membind` would.
pub fn bind_memory(node: usize) -> io::Result<()> {
    const MPOL_BIND: libc::c_long = 2;
    let bits = 8 * std::mem::size_of::<libc::c_ulong>();
    let mut mask = vec![0 as libc::c_ulong; node / bits + 1];
    mask[node / bits] |= 1 << (node % bits);
    // SAFETY: the mask buffer outlives the call and maxnode counts the bits it holds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            MPOL_BIND,
            mask.as_ptr(),
            (mask.len() * bits) as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_of_this_process_is_readable() {
        let cpus = current_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn binding_to_a_node_that_does_not_exist_fails_with_the_kernels_reason() {
        let e = bind_memory(1000).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    }
}
