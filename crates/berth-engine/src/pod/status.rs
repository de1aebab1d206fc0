//! Pods as the CRI layer lists and inspects them.

use crate::error::Result;
use crate::pod::{PodRecord, PodState};
use crate::Engine;

/// A pod's record with its state as of now (a pod whose infra process died is not ready).
#[derive(Clone, Debug)]
pub struct PodView {
    pub record: PodRecord,
    pub ready: bool,
}

impl PodView {
    fn of(record: PodRecord) -> PodView {
        let ready = record.ready();
        PodView { record, ready }
    }
}

impl Engine {
    pub fn pod_status(&self, id: &str) -> Result<PodView> {
        Ok(PodView::of(self.pod_lookup(id)?.snapshot()))
    }

    pub fn list_pods(&self) -> Vec<PodView> {
        let entries: Vec<_> = self.pods_index().by_id.values().cloned().collect();
        let mut v: Vec<PodView> = entries
            .into_iter()
            .map(|p| PodView::of(p.snapshot()))
            .collect();
        v.sort_by_key(|a| a.record.created);
        v
    }

    /// The pod's network namespace while it is ready (port forwarding, stats).
    pub fn pod_netns(&self, id: &str) -> Result<Option<std::path::PathBuf>> {
        let rec = self.pod_lookup(id)?.snapshot();
        if rec.state != PodState::Ready {
            return Err(crate::error::EngineError::Conflict(format!(
                "pod sandbox {} is not ready",
                rec.id
            )));
        }
        Ok(rec.netns)
    }
}
