//! An idle server stays idle: watching the config file and model folders must not feed on its
//! own reads (it once spun at ~80% of a core because reading the config raised inotify events).

mod common;

use common::{Repo, Server};
use std::time::Duration;

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn idle_server_with_a_watched_config_uses_almost_no_cpu() {
    let repo = Repo::new(&[("identity", ""), ("add", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_seconds(server.child.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(server.child.id()) - before;
    assert!(used < 0.3, "an idle server used {used:.2} s of CPU in 3 s");
}
