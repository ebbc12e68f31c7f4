//! When the server and a model are "ready": the one rule behind KServe `ServerReady` /
//! `ModelReady`, `GET /v2/health/ready`, `.../ready` and the gRPC health service.

use crate::error::ServeError;
use crate::serving::registry::{Registry, Snapshot, VersionSelector};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which models must be serving for the server to be ready (`--readiness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadinessRule {
    /// Every model in the registry has an AVAILABLE version. A server that lost a model is not
    /// ready, so a load balancer sends its traffic to a replica that has it.
    #[default]
    Strict,
    /// At least one model has an AVAILABLE version (multi-model servers whose models fail alone).
    Any,
}

impl ReadinessRule {
    /// Whether the rule holds for these models. With no models at all, strict holds (nothing is
    /// missing) and any does not (nothing serves).
    pub fn holds(self, models: &Snapshot) -> bool {
        match self {
            ReadinessRule::Strict => models.values().all(|m| m.has_available()),
            ReadinessRule::Any => models.values().any(|m| m.has_available()),
        }
    }
}

/// The server's readiness as every transport reports it.
pub struct Readiness {
    registry: Arc<Registry>,
    rule: ReadinessRule,
    /// Set once the initial config has been applied. Before that the registry may still be
    /// empty, which the strict rule would call ready.
    started: AtomicBool,
    /// Set when shutdown begins, so probes take the server out of rotation while it drains.
    stopping: AtomicBool,
}

impl Readiness {
    pub fn new(registry: Arc<Registry>, rule: ReadinessRule) -> Readiness {
        Readiness {
            registry,
            rule,
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Server readiness. Lock-free (one registry snapshot), so probes may poll it freely.
    pub fn server_ready(&self) -> bool {
        self.started.load(Ordering::Acquire)
            && !self.stopping.load(Ordering::Acquire)
            && self.rule.holds(&self.registry.snapshot())
    }

    /// Whether `model` (at `version`, or its latest) can take requests now. An unknown model is
    /// an error (NOT_FOUND); a known one that cannot serve is simply not ready.
    pub fn model_ready(&self, model: &str, version: &VersionSelector) -> Result<bool, ServeError> {
        match self.registry.resolve(model, version) {
            Ok(_) => Ok(true),
            Err(ServeError::ModelNotFound { model }) => Err(ServeError::ModelNotFound { model }),
            Err(_) => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::registry::{ModelStatus, VersionState, VersionStatus};

    /// `n` models whose only version is still loading. (An AVAILABLE version needs a loaded
    /// servable; that case is covered by the integration tests with real models.)
    fn loading_models(n: usize) -> Snapshot {
        (0..n)
            .map(|i| {
                let mut m = ModelStatus::new(&format!("m{i}"));
                m.versions
                    .insert(1, VersionStatus::new(1, VersionState::Loading));
                (m.name.clone(), Arc::new(m))
            })
            .collect()
    }

    #[test]
    fn empty_registry() {
        assert!(ReadinessRule::Strict.holds(&Snapshot::new()));
        assert!(!ReadinessRule::Any.holds(&Snapshot::new()));
    }

    #[test]
    fn a_model_without_an_available_version() {
        assert!(!ReadinessRule::Strict.holds(&loading_models(1)));
        assert!(!ReadinessRule::Any.holds(&loading_models(2)));
    }

    #[test]
    fn not_ready_before_start_nor_while_stopping() {
        let readiness = Readiness::new(Arc::new(Registry::new()), ReadinessRule::Strict);
        assert!(!readiness.server_ready());
        readiness.mark_started();
        assert!(readiness.server_ready());
        readiness.mark_stopping();
        assert!(!readiness.server_ready());
    }

    #[test]
    fn unknown_model_is_an_error() {
        let registry = Arc::new(Registry::new());
        registry.update("m", |m| {
            m.versions
                .insert(1, VersionStatus::new(1, VersionState::Start));
        });
        let readiness = Readiness::new(registry, ReadinessRule::Strict);
        assert_eq!(
            readiness.model_ready("m", &VersionSelector::Latest),
            Ok(false)
        );
        assert!(matches!(
            readiness.model_ready("x", &VersionSelector::Latest),
            Err(ServeError::ModelNotFound { .. })
        ));
    }
}
