//! 50 hot swaps of a mid-sized model (16 MiB of weights): resident memory after the last swap
//! stays within 5% of after the first, i.e. retired versions really give their memory back.

mod common;

use common::{statuses, Repo, Server};
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0
}

/// Waits until `version` is AVAILABLE and every older version has reached END.
async fn wait_swapped(server: &Server, version: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = statuses(server, "matmul").await;
        let new_up = s.iter().any(|&(v, state)| v == version && state == 30);
        let old_gone = s
            .iter()
            .filter(|&&(v, _)| v < version)
            .all(|&(_, state)| state == 50);
        if new_up && old_gone {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "version {version} did not swap in: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_return_their_memory() {
    let staging = tempfile::tempdir().unwrap();
    // x[1,2048] · W[2048,2048]: 16 MiB of weights.
    common::make_matmul_model(staging.path(), 1, 2048);
    let repo = Repo::new(&[]);
    let base = repo.dir.path().join("models/matmul");
    common::copy_dir(staging.path(), &base.join("1"));
    std::fs::write(
        repo.config_path(),
        r#"{"model_config_list": [{"config": {"name": "matmul", "base_path": "models/matmul", "nireq": 2}}]}"#,
    )
    .unwrap();
    let server = Server::with_config(&repo, &["--file_settle_ms", "50"]);
    server.wait_loaded();
    let pid = server.child.id();
    let mut after_first = 0.0;
    let mut trajectory = Vec::new();
    let started = Instant::now();
    for version in 2..=51i64 {
        common::copy_dir(staging.path(), &base.join(version.to_string()));
        wait_swapped(&server, version).await;
        std::fs::remove_dir_all(base.join((version - 1).to_string())).unwrap();
        if version == 2 {
            after_first = rss_mib(pid);
        }
        trajectory.push(rss_mib(pid));
    }
    let after_last = rss_mib(pid);
    println!(
        "swap_memory: RSS after the first swap {after_first:.1} MiB, after the 50th {after_last:.1} MiB ({:+.1}%), highest after any swap {:.1} MiB, 50 swaps in {:.1} s",
        (after_last / after_first - 1.0) * 100.0,
        trajectory.iter().cloned().fold(0.0, f64::max),
        started.elapsed().as_secs_f64()
    );
    assert!(
        after_last <= after_first * 1.05,
        "RSS grew from {after_first:.1} MiB to {after_last:.1} MiB; after each swap: {}",
        trajectory
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
