//! The published model registry: a lock-free snapshot that every request reads.
//!
//! Readers `load()` an `Arc` of the whole map (no lock, no actor hop); model actors publish a new
//! map with `rcu`. A request that resolved a [`Servable`] keeps it alive through its own `Arc`,
//! so retiring a version never cuts off a request already in flight.

use crate::error::ServeError;
use crate::serving::servable::Servable;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The TFS life cycle of a version (numbers are `ModelVersionStatus.State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionState {
    Start = 10,
    Loading = 20,
    Available = 30,
    Unloading = 40,
    End = 50,
}

impl VersionState {
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Start => "START",
            VersionState::Loading => "LOADING",
            VersionState::Available => "AVAILABLE",
            VersionState::Unloading => "UNLOADING",
            VersionState::End => "END",
        }
    }
}

/// One version as clients and operators see it.
#[derive(Clone)]
pub struct VersionStatus {
    pub version: u64,
    pub state: VersionState,
    /// Why the last load failed, if it did (the version may still be serving an older load).
    pub error: Option<String>,
    /// Present exactly when the version is AVAILABLE.
    pub servable: Option<Arc<Servable>>,
}

impl VersionStatus {
    pub fn new(version: u64, state: VersionState) -> VersionStatus {
        VersionStatus {
            version,
            state,
            error: None,
            servable: None,
        }
    }
}

/// Which version a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    /// The highest AVAILABLE version.
    Latest,
    Number(u64),
    Label(String),
}

impl VersionSelector {
    /// A version number as clients send it: 0 means the default version, as in OVMS (ovmsclient
    /// sends 0 unless told a version, in gRPC `model_spec.version` and in REST paths alike).
    pub fn from_number(version: u64) -> VersionSelector {
        match version {
            0 => VersionSelector::Latest,
            n => VersionSelector::Number(n),
        }
    }
}

/// One model's published state.
#[derive(Clone, Default)]
pub struct ModelStatus {
    pub name: String,
    pub versions: BTreeMap<u64, VersionStatus>,
    /// TFS version labels (label → version).
    pub labels: BTreeMap<String, u64>,
    /// A problem with the model as a whole (e.g. its base path cannot be read).
    pub error: Option<String>,
    /// Which model actor owns this entry; a retired actor's late updates must not touch the
    /// entry of a model re-added under the same name (or resurrect a removed one).
    pub owner: u64,
}

impl ModelStatus {
    pub fn new(name: &str) -> ModelStatus {
        ModelStatus {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// The highest AVAILABLE version's servable.
    pub fn latest(&self) -> Option<&Arc<Servable>> {
        self.versions
            .values()
            .rev()
            .find_map(|v| v.servable.as_ref())
    }

    pub fn has_available(&self) -> bool {
        self.latest().is_some()
    }

    fn resolve(&self, selector: &VersionSelector) -> Result<Arc<Servable>, ServeError> {
        let version = match selector {
            VersionSelector::Latest => {
                return self
                    .latest()
                    .cloned()
                    .ok_or_else(|| ServeError::NoVersionAvailable {
                        model: self.name.clone(),
                        loading: self.versions.values().any(|v| {
                            matches!(v.state, VersionState::Start | VersionState::Loading)
                        }),
                    })
            }
            VersionSelector::Number(v) => *v,
            VersionSelector::Label(label) => {
                *self
                    .labels
                    .get(label)
                    .ok_or_else(|| ServeError::LabelNotFound {
                        model: self.name.clone(),
                        label: label.clone(),
                    })?
            }
        };
        let status = self
            .versions
            .get(&version)
            .ok_or_else(|| ServeError::VersionNotFound {
                model: self.name.clone(),
                version,
            })?;
        match (&status.servable, status.state) {
            (Some(servable), _) => Ok(servable.clone()),
            (None, VersionState::Start | VersionState::Loading) => {
                Err(ServeError::VersionNotLoadedYet {
                    model: self.name.clone(),
                    version,
                })
            }
            (None, VersionState::Unloading) => Err(ServeError::VersionRetired {
                model: self.name.clone(),
                version,
            }),
            (None, VersionState::End) if status.error.is_some() => {
                Err(ServeError::VersionNotFound {
                    model: self.name.clone(),
                    version,
                })
            }
            (None, _) => Err(ServeError::VersionRetired {
                model: self.name.clone(),
                version,
            }),
        }
    }
}

pub type Snapshot = HashMap<String, Arc<ModelStatus>>;

#[derive(Default)]
pub struct Registry {
    models: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The servable a request should run on. Lock-free.
    pub fn resolve(
        &self,
        model: &str,
        selector: &VersionSelector,
    ) -> Result<Arc<Servable>, ServeError> {
        let snapshot = self.models.load();
        let status = snapshot
            .get(model)
            .ok_or_else(|| ServeError::ModelNotFound {
                model: model.to_string(),
            })?;
        status.resolve(selector)
    }

    pub fn model(&self, name: &str) -> Option<Arc<ModelStatus>> {
        self.models.load().get(name).cloned()
    }

    /// Every model, for status listings.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.models.load_full()
    }

    /// Publishes a change to one model (created if absent). Concurrent writers retry, never lose.
    pub fn update(&self, name: &str, change: impl Fn(&mut ModelStatus)) {
        self.models.rcu(|current| {
            let mut next = Snapshot::clone(current);
            let mut status = next
                .get(name)
                .map(|s| ModelStatus::clone(s))
                .unwrap_or_else(|| ModelStatus::new(name));
            change(&mut status);
            next.insert(name.to_string(), Arc::new(status));
            next
        });
    }

    /// Creates (or replaces) a model's entry, owned by `owner`.
    pub fn register(&self, name: &str, owner: u64, labels: BTreeMap<String, u64>) {
        self.models.rcu(|current| {
            let mut next = Snapshot::clone(current);
            let status = ModelStatus {
                name: name.to_string(),
                owner,
                labels: labels.clone(),
                ..Default::default()
            };
            next.insert(name.to_string(), Arc::new(status));
            next
        });
    }

    /// Publishes a change to a model's entry only if it exists and `owner` still owns it.
    pub fn update_owned(&self, name: &str, owner: u64, change: impl Fn(&mut ModelStatus)) {
        self.models.rcu(|current| {
            let Some(existing) = current.get(name).filter(|s| s.owner == owner) else {
                return Arc::clone(current);
            };
            let mut status = ModelStatus::clone(existing);
            change(&mut status);
            let mut next = Snapshot::clone(current);
            next.insert(name.to_string(), Arc::new(status));
            Arc::new(next)
        });
    }

    /// Withdraws a model from the registry (its requests in flight finish on their own `Arc`s).
    pub fn remove(&self, name: &str) {
        self.models.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.remove(name);
            next
        });
    }
}

impl crate::metrics::ModelCatalog for Registry {
    fn knows(&self, model: &str) -> bool {
        self.model(model).is_some()
    }

    fn version_gauges(&self) -> Vec<crate::metrics::VersionGauges> {
        let mut gauges = Vec::new();
        for (name, model) in self.snapshot().iter() {
            debug_assert!(model
                .versions
                .values()
                .all(|s| s.servable.is_none() || s.state == VersionState::Available));
            for status in model.versions.values() {
                gauges.push(crate::metrics::VersionGauges {
                    model: name.clone(),
                    version: status.version,
                    state: status.state.name(),
                    serving: status
                        .servable
                        .as_ref()
                        .map(|s| crate::metrics::PoolGauges {
                            in_flight: s.in_flight(),
                            workers: s.workers(),
                            active: s.active(),
                            streams: s
                                .properties
                                .get("NUM_STREAMS")
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(1),
                        }),
                });
            }
        }
        gauges
    }
}
