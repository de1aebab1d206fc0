//! `rm`: the commit point is the record's removal; the files go in the background.

use std::time::Duration;

use crate::container::wait::wait_exit;
use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::{io_err, Engine};

impl Engine {
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        if rec.state.status == Status::Restarting && !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                rec.name
            )));
        }
        if rec.state.status.is_running() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            // Best effort: `rm -f` works on a full disk.
            c.record(|r| r.manually_stopped = true);
            let mut rx = c.signal.subscribe();
            let exits = rx.borrow().exits;
            let _ = self.runtime().kill(&self.runtime_dir(&c.id), 9).await;
            if rec.state.status == Status::Paused {
                let _ = self.thaw(&c).await;
            }
            if !wait_exit(&mut rx, exits, Some(Duration::from_secs(30))).await {
                return Err(EngineError::Internal(format!(
                    "could not kill running container {}, cannot remove",
                    rec.id
                )));
            }
        }
        c.update_volatile(|r| r.state.status = Status::Removing);
        c.removed.store(true, std::sync::atomic::Ordering::SeqCst);
        // The commit point: a container directory without its record is a removal in progress,
        // which `restore` finishes if the daemon dies before the cleanup below does.
        match std::fs::remove_file(c.dir.join("container.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                c.removed.store(false, std::sync::atomic::Ordering::SeqCst);
                let _ = c.record(|r| r.state.status = Status::Exited);
                return Err(io_err("removing container record", e));
            }
        }
        // Unmounting syncs the filesystem, which can take a while on a busy disk: nobody needs
        // to wait for it once the record is gone.
        let engine = self.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || engine.purge_files(&id));
        {
            let mut reg = self.write_index();
            reg.by_id.remove(&c.id);
            if reg.names.get(&rec.name) == Some(&c.id) {
                reg.names.remove(&rec.name);
            }
        }
        for p in c.take_pending() {
            let _ =
                p.tx.send(Err(EngineError::Conflict("container removed".into())));
        }
        self.inner.execs.remove_container(&c.id);
        self.emit_container_rec(&rec, "destroy");
        self.release_mounts(&c.id, &rec.mount_points);
        if volumes {
            self.remove_anonymous_volumes(&rec.mount_points).await;
        }
        self.remember_removed(&c.id, c.snapshot().state.exit_code);
        c.signal.send_modify(|s| {
            s.removed = true;
            s.running = false;
        });
        Ok(())
    }

    /// Removes what a deleted container left: its filesystem, runtime leftovers, directories.
    pub(crate) fn purge_files(&self, id: &str) {
        self.net_forget(id);
        self.release_shm(id);
        if let Err(e) = self.images().remove_snapshot(id) {
            tracing::warn!("removing filesystem of container {id}: {e}");
            return;
        }
        self.runtime()
            .cleanup(&self.runtime_dir(id), &self.state_root(), id);
        let _ = std::fs::remove_dir_all(self.runtime_dir(id));
        if let Err(e) = std::fs::remove_dir_all(self.container_dir(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing directory of container {id}: {e}");
            }
        }
    }
}
