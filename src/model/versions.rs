//! Pure decisions about a model's versions: what to load, what to retire. No threads, no I/O.

use std::collections::BTreeSet;

/// Whether a wanted version must be (re)loaded, given what it would be loaded from now
/// (`current`: folder stamp + config generation), what its serving instance was loaded from, and
/// what its last failed load was tried with. A failed version is retried only after a change.
pub fn needs_load<T: PartialEq>(current: &T, serving: Option<&T>, failed: Option<&T>) -> bool {
    serving != Some(current) && failed != Some(current)
}

/// Serving versions the policy no longer wants. A wanted version that cannot serve (failed or
/// still missing) is covered by keeping the best unwanted ones, so a broken new version never
/// takes a model off the air.
pub fn versions_to_retire(wanted: &BTreeSet<u64>, serving: &BTreeSet<u64>) -> BTreeSet<u64> {
    let shortfall = wanted.len() - wanted.intersection(serving).count();
    let unwanted: Vec<u64> = serving.difference(wanted).copied().collect();
    unwanted.iter().rev().skip(shortfall).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn new_version_loads_then_old_retires() {
        assert!(needs_load(&("v2", 0), None, None));
        assert_eq!(versions_to_retire(&s(&[2]), &s(&[1, 2])), s(&[1]));
    }

    #[test]
    fn failed_new_version_keeps_old_serving() {
        assert!(versions_to_retire(&s(&[2]), &s(&[1])).is_empty());
        assert!(
            !needs_load(&("v2", 0), None, Some(&("v2", 0))),
            "same files, same config: no retry"
        );
        assert!(
            needs_load(&("v2 fixed", 0), None, Some(&("v2", 0))),
            "files changed: retry"
        );
        assert!(
            needs_load(&("v2", 1), None, Some(&("v2", 0))),
            "config changed: retry"
        );
    }

    #[test]
    fn latest_two_keeps_best_fallbacks_only() {
        // Wanted 4 and 5; 5 failed; serving 2, 3, 4 → keep 3 as the stand-in, retire 2.
        assert_eq!(versions_to_retire(&s(&[4, 5]), &s(&[2, 3, 4])), s(&[2]));
    }

    #[test]
    fn deleted_versions_retire() {
        assert!(!needs_load(&("v1", 0), Some(&("v1", 0)), None));
        assert!(needs_load(&("v1 replaced", 0), Some(&("v1", 0)), None));
        assert_eq!(versions_to_retire(&s(&[1]), &s(&[1, 2])), s(&[2]));
        assert_eq!(versions_to_retire(&s(&[]), &s(&[1])), s(&[1]));
    }
}
