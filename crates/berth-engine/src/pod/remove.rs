//! `remove`: a pod is stopped if need be, its containers removed, then its files. Removing an
//! unknown pod is no error.

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let p = match self.pod_lookup(id) {
            Ok(p) => p,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&p.id).await?;
        let _g = p.op.lock().await;
        for cid in self.pod_container_ids(&p.id) {
            match self.remove(&cid, true, false).await {
                Ok(()) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // The commit point, as for containers: no record, no pod.
        match std::fs::remove_file(p.dir.join("pod.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let rec = p.snapshot();
        {
            let mut idx = self.pods_index();
            idx.by_id.remove(&p.id);
            idx.keys.remove(&crate::pod::PodRecord::key(&rec.spec));
        }
        let _ = std::fs::remove_dir_all(&p.dir);
        let _ = std::fs::remove_dir_all(self.pod_run_dir(&p.id));
        Ok(())
    }
}
