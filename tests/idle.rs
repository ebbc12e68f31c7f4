//! An idle server stays idle: watching the config file and model folders must not feed on its
//! own reads (it once spun at ~80% of a core because reading the config raised inotify events).
//!
//! Counted, not timed: every periodic rescan reads the config file and every model folder, so
//! if reads raised events, each poll would be followed by file-event rescans. Three polls with
//! none proves the loop is closed on any machine, however slow or busy.

mod common;

use common::{Repo, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_with_a_watched_config_does_not_feed_on_its_own_reads() {
    let repo = Repo::new(&[("identity", ""), ("add", "")]);
    let server = Server::with_config(&repo, &["--file_system_poll_wait_seconds", "1"]);
    server.wait_loaded();
    let events = || {
        server.metric(
            "vinoserve_repository_scans_total",
            &[("trigger", "file_event")],
        )
    };
    // Let the first poll after loading pass, so that anything the start-up itself touched has
    // been reported before counting.
    server.wait_polls(2).await;
    let before = events().await;
    server.wait_polls(3).await;
    assert_eq!(
        events().await,
        before,
        "the server's own reads of its config and model folders raised file events"
    );
}
