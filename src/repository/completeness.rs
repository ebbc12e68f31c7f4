//! "Is this version folder finished being copied?" — decided from the files alone.
//!
//! A folder counts as complete when its model files are all there (an IR whose XML is closed and
//! whose .bin is at least as long as the XML's constants need; a SavedModel with every variables
//! shard and its index; a TFLite file with its identifier; an ONNX file; a Paddle pair), and its
//! [`Stamp`] has not changed for a settle interval (the caller tracks that). This is what keeps a
//! half-finished `cp -r` from ever being loaded.

use crate::error::BackendError;
use crate::runtime::files::{ModelFiles, NOTHING_FOUND};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What the folder's files look like now: names, sizes, modification times, and who may read
/// them. Two equal stamps some time apart mean nobody is writing into the folder; a failed
/// version is retried when its stamp changes, so an operator's `chmod` or `chown` that makes a
/// file readable counts as a change too.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stamp(Vec<(String, u64, Option<SystemTime>, Access)>);

/// Permission bits, owner and group of one entry.
type Access = (u32, u32, u32);

fn access(meta: &std::fs::Metadata) -> Access {
    use std::os::unix::fs::MetadataExt;
    (meta.mode(), meta.uid(), meta.gid())
}

impl Stamp {
    /// True when no file was modified within `interval` (by the file system's clock).
    pub fn quiet_for(&self, interval: Duration) -> bool {
        self.quiet_remaining(interval).is_zero()
    }

    /// How much longer until no file will have been modified within `interval`.
    pub fn quiet_remaining(&self, interval: Duration) -> Duration {
        let newest = self
            .0
            .iter()
            .filter_map(|(_, _, modified, _)| *modified)
            .max();
        match newest {
            // A modification time in the future (clock skew) counts as "just now".
            Some(t) => {
                interval.saturating_sub(SystemTime::now().duration_since(t).unwrap_or_default())
            }
            None => Duration::ZERO,
        }
    }
}

/// The stamp of a version folder: every entry below it (recursively: a SavedModel keeps its
/// weights in `variables/`), and the folder itself, so a folder just created counts as busy.
pub fn stamp(dir: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(dir)?;
    let mut entries = vec![(".".to_string(), 0, meta.modified().ok(), access(&meta))];
    collect(dir, "", &mut entries)?;
    entries.sort();
    Ok(Stamp(entries))
}

fn collect(
    dir: &Path,
    prefix: &str,
    entries: &mut Vec<(String, u64, Option<SystemTime>, Access)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if meta.is_dir() {
            entries.push((format!("{name}/"), 0, meta.modified().ok(), access(&meta)));
            collect(&entry.path(), &format!("{name}/"), entries)?;
        } else {
            entries.push((name, meta.len(), meta.modified().ok(), access(&meta)));
        }
    }
    Ok(())
}

/// What the files of a version folder say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A model whose files are all there.
    Complete,
    /// A model being copied: some of its files are missing or short. Wait.
    Incomplete(String),
    /// No model at all, or more than one: once the folder is quiet, that is the operator's
    /// mistake to report, not a copy to wait for.
    NoModel(String),
}

/// Whether the model files in `dir` look whole.
pub fn files_complete(dir: &Path) -> Verdict {
    let files = match ModelFiles::find(dir) {
        Ok(files) => files,
        // `mkdir 3 && cp ... 3/`: an empty folder is a copy that has not started.
        Err(BackendError::NoModelFiles { found, .. }) if found == NOTHING_FOUND => {
            return Verdict::Incomplete("the folder is empty".into())
        }
        Err(e @ (BackendError::NoModelFiles { .. } | BackendError::AmbiguousModelFiles { .. })) => {
            return Verdict::NoModel(e.to_string())
        }
        // A companion (IR weights, Paddle parameters) not there yet, or unreadable for now.
        Err(e) => return Verdict::Incomplete(e.to_string()),
    };
    let checked = match &files {
        ModelFiles::Ir { xml, bin } => ir_complete(xml, bin),
        ModelFiles::SavedModel(dir) => saved_model_complete(dir),
        ModelFiles::TfLite(path) => tflite_complete(path),
        // ONNX and Paddle files have no cheap self-check; the settle interval and a load retry
        // on change cover them.
        ModelFiles::Onnx(_) | ModelFiles::Paddle { .. } => Ok(()),
    };
    match checked {
        Ok(()) => Verdict::Complete,
        Err(reason) => Verdict::Incomplete(reason),
    }
}

fn ir_complete(xml: &Path, bin: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(xml).map_err(|e| format!("{}: {e}", xml.display()))?;
    if !text.trim_end().ends_with("</net>") {
        return Err(format!(
            "{} is not complete yet (no closing </net>)",
            xml.display()
        ));
    }
    let needed = bin_bytes_needed(&text);
    let have = std::fs::metadata(bin)
        .map_err(|e| format!("{}: {e}", bin.display()))?
        .len();
    if have < needed {
        return Err(format!(
            "{} has {have} of the {needed} bytes the IR refers to",
            bin.display()
        ));
    }
    Ok(())
}

/// A SavedModel's weights are sharded as `variables/variables.data-<i>-of-<n>` next to
/// `variables/variables.index`: every shard the names promise, and the index, must be there.
fn saved_model_complete(dir: &Path) -> Result<(), String> {
    let variables = dir.join("variables");
    let listing = std::fs::read_dir(&variables).map_err(|e| {
        format!(
            "{}: {e} (a SavedModel keeps its weights there)",
            variables.display()
        )
    })?;
    let mut shards = std::collections::BTreeSet::new();
    let mut promised = None;
    let mut index = false;
    for entry in listing.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "variables.index" {
            index = true;
        } else if let Some(rest) = name.strip_prefix("variables.data-") {
            let Some((i, n)) = rest.split_once("-of-") else {
                continue;
            };
            if let (Ok(i), Ok(n)) = (i.parse::<u32>(), n.parse::<u32>()) {
                shards.insert(i);
                promised = Some(n);
            }
        }
    }
    match promised {
        None if index => Err(format!(
            "{} has variables.index but no variables.data-* shard yet",
            variables.display()
        )),
        None => Ok(()), // a model without variables
        Some(_) if !index => Err(format!(
            "{} has variables.data shards but no variables.index yet",
            variables.display()
        )),
        Some(n) if (0..n).any(|i| !shards.contains(&i)) => Err(format!(
            "{} has {} of its {n} variables.data shards",
            variables.display(),
            shards.len()
        )),
        Some(_) => Ok(()),
    }
}

/// A TFLite flatbuffer carries the identifier "TFL3" in bytes 4..8.
fn tflite_complete(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if &head[4..8] != b"TFL3" {
        return Err(format!(
            "{} does not start like a TFLite model (no TFL3 identifier)",
            path.display()
        ));
    }
    Ok(())
}

/// The end of the furthest constant in the weights file: max(offset + size) over `<data>` tags.
pub fn bin_bytes_needed(xml: &str) -> u64 {
    let mut needed = 0;
    for tag in xml.split("<data ").skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        if let (Some(offset), Some(size)) = (attribute(tag, "offset"), attribute(tag, "size")) {
            needed = needed.max(offset.saturating_add(size));
        }
    }
    needed
}

fn attribute(tag: &str, name: &str) -> Option<u64> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).map(|i| i + key.len()).or_else(|| {
        let key = format!("{name}=\"");
        tag.starts_with(&key).then_some(key.len())
    })?;
    let rest = &tag[start..];
    rest[..rest.find('"')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<net name="m" version="11"><layers>
<layer id="1" type="Const"><data element_type="f32" shape="2" offset="0" size="8" /></layer>
<layer id="2" type="Const"><data element_type="f32" shape="4" offset="8" size="16" /></layer>
<layer id="3" type="Parameter"><data shape="1,10" element_type="f32" /></layer>
</layers></net>
"#;

    #[test]
    fn bin_length_comes_from_the_furthest_constant() {
        assert_eq!(bin_bytes_needed(XML), 24);
        assert_eq!(bin_bytes_needed("<net></net>"), 0);
    }

    fn incomplete(verdict: Verdict) -> String {
        match verdict {
            Verdict::Incomplete(reason) => reason,
            other => panic!("expected Incomplete, got {other:?}"),
        }
    }

    #[test]
    fn half_copied_folders_are_incomplete() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.xml"), &XML[..XML.len() / 2]).unwrap();
        assert!(incomplete(files_complete(d.path())).contains("weights file is missing"));
        std::fs::write(d.path().join("model.bin"), [0u8; 24]).unwrap();
        assert!(incomplete(files_complete(d.path())).contains("not complete"));
        std::fs::write(d.path().join("model.xml"), XML).unwrap();
        std::fs::write(d.path().join("model.bin"), [0u8; 10]).unwrap();
        assert!(incomplete(files_complete(d.path())).contains("10 of the 24 bytes"));
        std::fs::write(d.path().join("model.bin"), [0u8; 24]).unwrap();
        assert_eq!(files_complete(d.path()), Verdict::Complete);
    }

    #[test]
    fn a_folder_without_a_model_is_not_waited_for() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("README.txt"), b"x").unwrap();
        let Verdict::NoModel(reason) = files_complete(d.path()) else {
            panic!("no model")
        };
        assert!(reason.contains("found: README.txt"), "{reason}");
    }

    #[test]
    fn a_saved_model_waits_for_every_variables_shard() {
        let d = tempfile::tempdir().unwrap();
        let variables = d.path().join("variables");
        std::fs::write(d.path().join("saved_model.pb"), b"x").unwrap();
        assert!(incomplete(files_complete(d.path())).contains("variables"));
        std::fs::create_dir(&variables).unwrap();
        assert_eq!(files_complete(d.path()), Verdict::Complete, "no variables");
        std::fs::write(variables.join("variables.data-00000-of-00002"), b"x").unwrap();
        assert!(incomplete(files_complete(d.path())).contains("no variables.index"));
        std::fs::write(variables.join("variables.index"), b"x").unwrap();
        assert!(incomplete(files_complete(d.path())).contains("1 of its 2"));
        std::fs::write(variables.join("variables.data-00001-of-00002"), b"x").unwrap();
        assert_eq!(files_complete(d.path()), Verdict::Complete);
    }

    #[test]
    fn a_tflite_file_must_carry_its_identifier() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m.tflite"), b"\x1c\0\0\0TF").unwrap();
        incomplete(files_complete(d.path()));
        std::fs::write(d.path().join("m.tflite"), b"\x1c\0\0\0TFL3\0\0").unwrap();
        assert_eq!(files_complete(d.path()), Verdict::Complete);
    }

    #[test]
    fn a_chmod_changes_the_stamp() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("model.bin");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let locked = stamp(d.path()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_ne!(locked, stamp(d.path()).unwrap());
    }

    #[test]
    fn the_stamp_covers_subfolders_and_the_folder_itself() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("variables")).unwrap();
        let before = stamp(d.path()).unwrap();
        std::fs::write(d.path().join("variables/variables.index"), b"x").unwrap();
        assert_ne!(before, stamp(d.path()).unwrap());
        let empty = tempfile::tempdir().unwrap();
        assert!(
            !stamp(empty.path())
                .unwrap()
                .quiet_for(Duration::from_secs(60)),
            "a folder just created is not quiet"
        );
    }

    #[test]
    fn stamp_changes_when_a_file_grows() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        let first = stamp(d.path()).unwrap();
        assert_eq!(first, stamp(d.path()).unwrap());
        std::fs::write(d.path().join("a"), b"12").unwrap();
        let second = stamp(d.path()).unwrap();
        assert_ne!(first, second);
        assert!(!second.quiet_for(Duration::from_secs(60)), "just written");
        let remaining = second.quiet_remaining(Duration::from_secs(60));
        assert!(remaining > Duration::from_secs(55) && remaining <= Duration::from_secs(60));
        assert!(second.quiet_for(Duration::ZERO));
    }
}
