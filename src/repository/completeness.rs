//! "Is this version folder finished being copied?" — decided from the files alone.
//!
//! A folder counts as complete when its model files are all there (an IR whose XML is closed and
//! whose .bin is at least as long as the XML's constants need, or an ONNX file), and its
//! [`Stamp`] has not changed for a settle interval (the caller tracks that). This is what keeps a
//! half-finished `cp -r` from ever being loaded.

use crate::runtime::files::ModelFiles;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What the folder's files look like now: names, sizes and modification times. Two equal stamps
/// some time apart mean nobody is writing into the folder.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stamp(Vec<(String, u64, Option<SystemTime>)>);

impl Stamp {
    /// True when no file was modified within `interval` (by the file system's clock).
    pub fn quiet_for(&self, interval: Duration) -> bool {
        self.quiet_remaining(interval).is_zero()
    }

    /// How much longer until no file will have been modified within `interval`.
    pub fn quiet_remaining(&self, interval: Duration) -> Duration {
        let newest = self.0.iter().filter_map(|(_, _, modified)| *modified).max();
        match newest {
            // A modification time in the future (clock skew) counts as "just now".
            Some(t) => {
                interval.saturating_sub(SystemTime::now().duration_since(t).unwrap_or_default())
            }
            None => Duration::ZERO,
        }
    }
}

pub fn stamp(dir: &Path) -> std::io::Result<Stamp> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().ok(),
            ));
        }
    }
    files.sort();
    Ok(Stamp(files))
}

/// Whether the model files in `dir` look whole; `Err` says what is still missing.
pub fn files_complete(dir: &Path) -> Result<(), String> {
    let files = ModelFiles::find(dir).map_err(|e| e.to_string())?;
    match files {
        ModelFiles::Ir { xml, bin } => {
            let text =
                std::fs::read_to_string(&xml).map_err(|e| format!("{}: {e}", xml.display()))?;
            if !text.trim_end().ends_with("</net>") {
                return Err(format!(
                    "{} is not complete yet (no closing </net>)",
                    xml.display()
                ));
            }
            let needed = bin_bytes_needed(&text);
            let have = std::fs::metadata(&bin)
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
        // An ONNX file has no cheap self-check; the settle interval and a load retry on change
        // cover it.
        ModelFiles::Onnx(_) => Ok(()),
    }
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

    #[test]
    fn half_copied_folders_are_incomplete() {
        let d = tempfile::tempdir().unwrap();
        assert!(files_complete(d.path()).is_err(), "empty folder");
        std::fs::write(d.path().join("model.xml"), &XML[..XML.len() / 2]).unwrap();
        std::fs::write(d.path().join("model.bin"), [0u8; 24]).unwrap();
        assert!(files_complete(d.path())
            .unwrap_err()
            .contains("not complete"));
        std::fs::write(d.path().join("model.xml"), XML).unwrap();
        std::fs::write(d.path().join("model.bin"), [0u8; 10]).unwrap();
        assert!(files_complete(d.path())
            .unwrap_err()
            .contains("10 of the 24 bytes"));
        std::fs::write(d.path().join("model.bin"), [0u8; 24]).unwrap();
        assert_eq!(files_complete(d.path()), Ok(()));
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
