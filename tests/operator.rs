//! What operators do to a running server's files, and what the server makes of it: a version
//! that failed because a file was unreadable loads once `chmod` fixes it (no `touch` needed);
//! a base folder the server cannot read says so in the model's status, and in the log once.

mod common;

use common::{wait_state, Repo, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tonic::Code;
use vinoserve::proto::tensorflow::serving::GetModelStatusRequest;

const AVAILABLE: i32 = 30;
const END: i32 = 50;
const DEADLINE: Duration = Duration::from_secs(120);

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chmod_fixes_a_failed_version_and_an_unreadable_folder_says_so() {
    let repo = Repo::new(&[
        ("add", r#""model_version_policy": {"all": {}}"#),
        ("identity", ""),
    ]);
    let bin = repo.model_dir("add").join("2/model.bin");
    chmod(&bin, 0o000);
    chmod(&repo.model_dir("identity"), 0o000);
    let config = repo.config_path().display().to_string();
    let server = Server::start_unprivileged(&["--config_path", &config]);
    server.wait_loaded();

    wait_state(&server, "add", 1, AVAILABLE, DEADLINE).await;
    wait_state(&server, "add", 2, END, DEADLINE).await;
    let mut client = server.model_client().await;
    let request = |model: &str| GetModelStatusRequest {
        model_spec: common::spec(model, None),
    };
    let status = client
        .get_model_status(request("identity"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("cannot read model folder")
            && status.message().contains("Permission denied"),
        "{}",
        status.message()
    );

    chmod(&bin, 0o644);
    wait_state(&server, "add", 2, AVAILABLE, DEADLINE).await;
    chmod(&repo.model_dir("identity"), 0o755);
    wait_state(&server, "identity", 1, AVAILABLE, DEADLINE).await;
    // Rescans of the unreadable folder logged its error once, not once per rescan.
    let log = server.log_text();
    assert_eq!(log.matches("cannot read model folder").count(), 1, "{log}");
}
