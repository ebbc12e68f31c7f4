//! Pure decisions about a model's versions: what to load, what to retire. No threads, no I/O.

use std::collections::BTreeSet;

/// Whether a wanted version must be (re)loaded, given what it would be loaded from now
/// (`current`: folder stamp + config generation), what its serving instance was loaded from, and
/// what its last failed load was tried with. A failed version is retried only after a change.
pub fn needs_load<T: PartialEq>(current: &T, serving: Option<&T>, failed: Option<&T>) -> bool {
    serving != Some(current) && failed != Some(current)
}

/// Serving versions to retire. Of the versions still on disk that the policy no longer wants,
/// the best are kept as stand-ins for wanted versions that cannot serve yet (loading, or
/// failed), so a new version that is slow or broken never takes a model off the air. A version
/// whose folder is gone is retired at once, unless it is the model's last serving version and a
/// wanted one is on its way: then the highest such stays until a wanted version serves.
pub fn versions_to_retire(
    wanted: &BTreeSet<u64>,
    serving: &BTreeSet<u64>,
    on_disk: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    let wanted_serving = wanted.intersection(serving).count();
    let shortfall = wanted.len() - wanted_serving;
    let unwanted: Vec<u64> = serving
        .intersection(on_disk)
        .filter(|v| !wanted.contains(v))
        .copied()
        .collect();
    let mut gone: Vec<u64> = serving.difference(on_disk).copied().collect();
    if shortfall > 0 && wanted_serving == 0 && unwanted.is_empty() {
        gone.pop(); // the highest stays as the stand-in
    }
    gone.into_iter()
        .chain(unwanted.into_iter().rev().skip(shortfall))
        .collect()
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
        assert_eq!(
            versions_to_retire(&s(&[2]), &s(&[1, 2]), &s(&[1, 2])),
            s(&[1])
        );
    }

    #[test]
    fn failed_new_version_keeps_old_serving() {
        assert!(versions_to_retire(&s(&[2]), &s(&[1]), &s(&[1, 2])).is_empty());
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
        assert_eq!(
            versions_to_retire(&s(&[4, 5]), &s(&[2, 3, 4]), &s(&[2, 3, 4, 5])),
            s(&[2])
        );
    }

    #[test]
    fn deleted_versions_retire() {
        assert!(!needs_load(&("v1", 0), Some(&("v1", 0)), None));
        assert!(needs_load(&("v1 replaced", 0), Some(&("v1", 0)), None));
        assert_eq!(versions_to_retire(&s(&[1]), &s(&[1, 2]), &s(&[1])), s(&[2]));
        assert_eq!(versions_to_retire(&s(&[]), &s(&[1]), &s(&[])), s(&[1]));
        // Deleted while another version loads and a wanted one serves: retired at once.
        assert_eq!(
            versions_to_retire(&s(&[2, 3]), &s(&[1, 2]), &s(&[2, 3])),
            s(&[1])
        );
        // The serving version deleted while the older one loads (latest 1): it stays until the
        // older one serves, then goes.
        assert!(versions_to_retire(&s(&[1]), &s(&[2]), &s(&[1])).is_empty());
        assert_eq!(versions_to_retire(&s(&[1]), &s(&[1, 2]), &s(&[1])), s(&[2]));
    }
}
