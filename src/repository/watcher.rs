//! inotify (through `notify`) on model folders and the config file. Events only *trigger* a
//! rescan; what to do is decided from the folder's contents, so lost or coalesced events are
//! harmless (and the periodic rescan is the safety net).

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// One thing to watch: `watch` (a folder), and the callback for events under `prefix`.
pub struct Target {
    pub watch: PathBuf,
    pub recursive: bool,
    pub prefix: PathBuf,
    pub on_change: OnChange,
}

impl Target {
    /// Everything under a model's base path.
    pub fn folder(path: &Path, on_change: OnChange) -> Target {
        Target {
            watch: path.to_path_buf(),
            recursive: true,
            prefix: path.to_path_buf(),
            on_change,
        }
    }

    /// One file, watched through its parent folder so editors that replace the file are seen.
    pub fn file(path: &Path, on_change: OnChange) -> Target {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Target {
            watch: parent.to_path_buf(),
            recursive: false,
            prefix: path.to_path_buf(),
            on_change,
        }
    }
}

/// Starts watching; the returned watcher stops when dropped. A target that cannot be watched
/// (e.g. its folder does not exist yet) is logged and left to the periodic rescan.
pub fn watch(targets: Vec<Target>) -> notify::Result<RecommendedWatcher> {
    let routes: Vec<(PathBuf, OnChange)> = targets
        .iter()
        .map(|t| (t.prefix.clone(), t.on_change.clone()))
        .collect();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            // Reads (IN_ACCESS / IN_OPEN / IN_CLOSE_NOWRITE) change nothing, and the server
            // itself reads these files on every rescan: reacting to them would loop forever.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                for (prefix, on_change) in &routes {
                    if event.paths.iter().any(|p| p.starts_with(prefix)) {
                        on_change();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error; the periodic rescan still runs")
            }
        })?;
    for target in &targets {
        let mode = if target.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(&target.watch, mode) {
            tracing::warn!(path = %target.watch.display(), error = %e, "cannot watch; relying on the periodic rescan");
        }
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn events_reach_the_matching_target_only() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let hits_a = Arc::new(AtomicUsize::new(0));
        let hits_b = Arc::new(AtomicUsize::new(0));
        let (ha, hb) = (hits_a.clone(), hits_b.clone());
        let _w = watch(vec![
            Target::folder(
                &a,
                Arc::new(move || {
                    ha.fetch_add(1, Ordering::SeqCst);
                }),
            ),
            Target::folder(
                &b,
                Arc::new(move || {
                    hb.fetch_add(1, Ordering::SeqCst);
                }),
            ),
        ])
        .unwrap();
        std::fs::create_dir(a.join("1")).unwrap();
        std::fs::write(a.join("1/model.xml"), b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while hits_a.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            hits_a.load(Ordering::SeqCst) > 0,
            "a change under a/ is reported"
        );
        assert_eq!(hits_b.load(Ordering::SeqCst), 0);
    }
}
