//! Keeping resident memory honest across hot swaps (glibc malloc, which OpenVINO uses; the
//! server's own allocations go to mimalloc with its defaults, see `src/main.rs`).
//!
//! Every version brings new loading and worker threads; glibc gives threads their own malloc
//! arenas and keeps what they free. Measured here (tests/swap_memory.rs, 50 swaps of a 16 MiB
//! model): glibc defaults +92% RSS; trimming after each unload +13%; trimming with two arenas
//! +2.4% in most runs but up to +26% in some (see `tune_malloc`); with fixed thresholds as well,
//! +2.4..2.8% in the 20 runs since they were both set to 4 MiB.

/// Tunes glibc malloc for hot swaps; call first thing in `main`, before any thread exists.
///
/// `arenas` caps the malloc arenas (0 keeps glibc's default of 8 per CPU). `trim_threshold_mib`
/// (0 keeps glibc's dynamic thresholds) makes free() hand the top of the heap back to the OS once
/// that much is free there, and gives blocks of that size or more their own mappings, unmapped
/// when freed. Why: with the dynamic thresholds glibc raises its trim threshold to
/// twice the largest block it ever unmapped (32 MiB once a model's weights were freed), and memory
/// OpenVINO frees after a version's unload stayed resident until a later swap: 50 swaps of a 16 MiB
/// model ended anywhere from +2.4% to +26% RSS. A fixed trim threshold of 4 MiB (above a batch-1
/// image tensor) with the mmap threshold at 32 MiB ended at +2.4..2.7% in ~20 runs but +10.4% in
/// one CI run (an 8 MiB block reused while resident); with both at 4 MiB, 12 of 12 runs ended at
/// +2.4..2.8% and no swap left more than +2.9%: model-sized blocks are never recycled resident.
///
/// Since the server's own allocations moved to mimalloc (`src/main.rs`), this tunes what OpenVINO
/// and other C libraries allocate; request buffers no longer pay the price below. That price,
/// measured with ResNet-50 over gRPC while they were glibc's: requests up to the threshold reuse
/// heap pages (batch 1: 0 minor faults per request, 34 with the dynamic thresholds), larger ones
/// were faulted in again each time (batch 16, 9.6 MB of input: ~2,200 faults per request vs
/// ~250; 32 MiB brings it back to ~30 but let up to +26% linger after swaps); a 9.6 MB round trip
/// through the `identity` model took 24–27 ms vs 11–18 ms with dynamic thresholds on the dev VM.
/// Lowering the threshold only while versions load or unload (plus 2 s) still left occasional
/// +8..16 MiB peaks, so the setting is global. Operators' MALLOC_* variables win.
pub fn tune_malloc(arenas: usize, trim_threshold_mib: usize) {
    if arenas > 0 && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        set_malloc_option(libc::M_ARENA_MAX, arenas);
    }
    let tuned_by_operator = ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if trim_threshold_mib > 0 && !tuned_by_operator {
        set_malloc_option(libc::M_MMAP_THRESHOLD, trim_threshold_mib << 20);
        set_malloc_option(libc::M_TRIM_THRESHOLD, trim_threshold_mib << 20);
    }
}

fn set_malloc_option(option: libc::c_int, value: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; `tune_malloc` runs before other threads.
    unsafe {
        libc::mallopt(option, value.min(i32::MAX as usize) as i32);
    }
}

/// Returns freed heap memory to the OS (after a version's compiled model is dropped, after a
/// large REST body): glibc's (OpenVINO's allocations) and mimalloc's (the server's own, when the
/// binary makes it the global allocator). mimalloc keeps freed blocks committed for reuse and
/// purges them only lazily, so without the collect a 100 MB JSON body left ~170 MB resident.
pub fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    // SAFETY: mi_collect(true) frees and purges memory mimalloc holds but no block uses; it is
    // thread-safe and a no-op where nothing was allocated through mimalloc.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
