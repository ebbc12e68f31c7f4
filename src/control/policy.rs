//! Version policies (TFS / OVMS `model_version_policy`): which versions on disk should be served.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The `num_versions` highest versions.
    Latest {
        #[serde(default = "one")]
        num_versions: usize,
    },
    /// Every version found.
    All {},
    /// Exactly these versions (those present on disk).
    Specific { versions: Vec<u64> },
}

fn one() -> usize {
    1
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest { num_versions: 1 }
    }
}

impl VersionPolicy {
    /// The versions to serve, given the versions present on disk.
    pub fn select(&self, on_disk: &BTreeSet<u64>) -> BTreeSet<u64> {
        match self {
            VersionPolicy::Latest { num_versions } => {
                on_disk.iter().rev().take(*num_versions).copied().collect()
            }
            VersionPolicy::All {} => on_disk.clone(),
            VersionPolicy::Specific { versions } => versions
                .iter()
                .filter(|v| on_disk.contains(v))
                .copied()
                .collect(),
        }
    }

    /// A policy problem worth refusing a config for.
    pub fn problem(&self) -> Option<String> {
        match self {
            VersionPolicy::Latest { num_versions: 0 } => {
                Some("latest.num_versions must be at least 1".into())
            }
            VersionPolicy::Specific { versions } if versions.is_empty() => {
                Some("specific.versions must list at least one version".into())
            }
            VersionPolicy::Specific { versions } if versions.contains(&0) => {
                Some("specific.versions must be positive integers".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn latest_takes_highest() {
        let disk = set(&[1, 2, 5, 10]);
        assert_eq!(VersionPolicy::default().select(&disk), set(&[10]));
        assert_eq!(
            VersionPolicy::Latest { num_versions: 2 }.select(&disk),
            set(&[5, 10])
        );
        assert_eq!(
            VersionPolicy::Latest { num_versions: 9 }.select(&disk),
            disk
        );
        assert!(VersionPolicy::default().select(&set(&[])).is_empty());
    }

    #[test]
    fn all_and_specific() {
        let disk = set(&[1, 2, 3]);
        assert_eq!(VersionPolicy::All {}.select(&disk), disk);
        assert_eq!(
            VersionPolicy::Specific {
                versions: vec![2, 7]
            }
            .select(&disk),
            set(&[2])
        );
    }

    #[test]
    fn parses_ovms_json() {
        let p: VersionPolicy = serde_json::from_str(r#"{"latest": {"num_versions": 2}}"#).unwrap();
        assert_eq!(p, VersionPolicy::Latest { num_versions: 2 });
        let p: VersionPolicy = serde_json::from_str(r#"{"latest": {}}"#).unwrap();
        assert_eq!(p, VersionPolicy::Latest { num_versions: 1 });
        let p: VersionPolicy = serde_json::from_str(r#"{"all": {}}"#).unwrap();
        assert_eq!(p, VersionPolicy::All {});
        let p: VersionPolicy =
            serde_json::from_str(r#"{"specific": {"versions": [1, 3]}}"#).unwrap();
        assert_eq!(
            p,
            VersionPolicy::Specific {
                versions: vec![1, 3]
            }
        );
        assert!(serde_json::from_str::<VersionPolicy>(r#"{"newest": {}}"#).is_err());
        assert!(VersionPolicy::Latest { num_versions: 0 }
            .problem()
            .is_some());
    }
}
