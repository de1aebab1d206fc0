//! `stop`: the pod's containers are killed, its infra process ends and its network is torn
//! down (CNI DEL, namespace removed). Stopping a stopped or unknown pod is no error: the
//! kubelet retries stops.

use crate::error::{EngineError, Result};
use crate::pod::PodState;
use crate::Engine;

impl Engine {
    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let p = match self.pod_lookup(id) {
            Ok(p) => p,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _g = p.op.lock().await;
        // The pod's containers get SIGKILL at once (its stop is their end), all together.
        let stops = self.pod_container_ids(&p.id).into_iter().map(|cid| {
            let engine = self.clone();
            tokio::spawn(async move { engine.stop(&cid, Some(0), Some("SIGKILL")).await })
        });
        for t in stops.collect::<Vec<_>>() {
            match t.await.map_err(EngineError::internal)? {
                Ok(()) | Err(EngineError::NotModified) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut rec = p.snapshot();
        let engine = self.clone();
        let rec = tokio::task::spawn_blocking(move || {
            if let Some(i) = rec.infra {
                i.kill();
            }
            engine.pod_network_down(&mut rec);
            rec
        })
        .await
        .map_err(EngineError::internal)?;
        p.update(|r| {
            r.state = PodState::NotReady;
            r.netns = rec.netns.clone();
            r.cni_result = rec.cni_result.clone();
        })?;
        Ok(())
    }
}
