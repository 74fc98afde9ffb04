//! Health commands: the term's reconciliation of what fails now against what was raised, and
//! the operators' mutes. The transitions and their events are decided by `Health` itself
//! (`health.rs`); these handlers store the result.

use std::sync::Arc;

use super::error::ClusterError;
use super::health::{Health, Observed};
use super::records::RecordKey;
use super::state::{Applied, ClusterState};

impl ClusterState {
    pub(super) fn reconcile_health(
        &mut self,
        observed: &[Observed],
        now_ms: u64,
        held: &[String],
    ) -> Applied<Arc<Health>> {
        match self.health.reconcile(observed, now_ms, held) {
            Some((next, events)) => self.store_health(next, events),
            None => Applied::new(self.health.clone()),
        }
    }

    pub(super) fn mute_health(
        &mut self,
        code: &str,
        ttl_ms: Option<u64>,
        sticky: bool,
        now_ms: u64,
    ) -> Result<Applied<Arc<Health>>, ClusterError> {
        let (next, event) = self.health.mute(code, ttl_ms, sticky, now_ms)?;
        Ok(self.store_health(next, vec![event]))
    }

    pub(super) fn unmute_health(
        &mut self,
        code: &str,
    ) -> Result<Applied<Arc<Health>>, ClusterError> {
        let (next, event) = self.health.unmute(code)?;
        Ok(self.store_health(next, vec![event]))
    }

    fn store_health(
        &mut self,
        next: Health,
        events: Vec<super::events::EventBody>,
    ) -> Applied<Arc<Health>> {
        self.health = Arc::new(next);
        let mut applied = Applied::new(self.health.clone());
        applied.touched.push(RecordKey::Health);
        applied.events = events;
        applied
    }
}
