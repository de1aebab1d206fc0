//! The exit monitor: a task per running container waits on its shim, records the exit, and applies
//! the restart policy (Docker's backoff) or releases the container's rootfs and mounts.

use std::sync::Arc;
use std::time::Duration;

use crate::container::config::restart_policy;
use crate::container::{ContainerRecord, Entry, Status};
use crate::runtime::ExitReply;
use crate::util::now_rfc3339;
use crate::Engine;

impl Engine {
    pub(crate) fn spawn_monitor(&self, c: Arc<Entry>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let rt = engine.runtime_dir(&c.id);
            let exit = match engine.runtime().wait(&rt).await {
                Ok(Some(e)) => Some(e),
                _ => None,
            };
            let exit = exit.or_else(|| engine.runtime().exit_file(&rt));
            engine.handle_exit(c, exit).await;
        });
    }

    pub(crate) async fn handle_exit(&self, c: Arc<Entry>, exit: Option<ExitReply>) {
        let (code, finished, oom) = match exit {
            Some(e) => (
                e.exit_code,
                if e.finished_at.is_empty() {
                    now_rfc3339()
                } else {
                    e.finished_at
                },
                e.oom_killed,
            ),
            // The shim vanished without a word: Docker reports such a container as 255.
            None => (255, now_rfc3339(), false),
        };
        // Its addresses, ports and namespace go before anyone hears of the exit, so a client
        // that reacts at once (run the next container on the same port) finds them free. And
        // before the record says exited: from there to the exit signal below nothing may
        // await, or a `not-running` waiter woken by the record would claim the exit before the
        // signal makes it claimable (and `start -a` right after would be told of it).
        self.net_stop(&c.id).await;
        let record_exit = |r: &mut ContainerRecord| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = finished.clone();
            r.state.oom_killed = oom;
        };
        // An `--rm` container is about to go: if the daemon dies first, recovery finds the same
        // exit in exit.json, so its record need not be written.
        let rec = if c.snapshot().host_config.auto_remove {
            c.update_volatile(record_exit)
        } else {
            // The exit happened: memory says so even if the disk is full (written later).
            c.record(record_exit)
        };
        // Restarting is recorded before waiters hear of the exit, so a client acting on its
        // wait (rm, inspect) never sees an always-restart container as plainly exited.
        if !rec.host_config.auto_remove && self.should_restart(&rec, code) {
            let _ = c.update_volatile(|r| r.state.status = Status::Restarting);
        }
        if oom {
            self.emit_container(&c.id, "oom", &[]);
        }
        self.emit_container(&c.id, "die", &[("exitCode", code.to_string())]);
        c.signal.send_modify(|s| {
            s.exits += 1;
            s.running = false;
            s.exit_code = code;
            s.last_exit = Some(std::time::Instant::now());
            s.exit_claimed = false;
        });
        if rec.host_config.auto_remove {
            let engine = self.clone();
            tokio::spawn(async move {
                let _ = engine.remove(&rec.id, true, true).await;
            });
            return;
        }
        let rt = self.runtime_dir(&c.id);
        let state_root = self.state_root();
        let id = c.id.clone();
        let runtime = self.inner.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.cleanup(&rt, &state_root, &id)).await;

        if self.should_restart(&rec, code) {
            let engine = self.clone();
            let delay = restart_delay(rec.restart_count);
            tokio::spawn(async move {
                // Restarting was recorded with the exit (above); a stop since then cleared it.
                if c.snapshot().state.status == Status::Restarting {
                    let _ = c.record(|r| r.state.status = Status::Restarting);
                }
                tokio::time::sleep(delay).await;
                let _g = c.op.lock().await;
                let cur = c.snapshot();
                // A stop, kill or rm during the delay cancels the restart.
                if cur.manually_stopped || cur.state.status != Status::Restarting {
                    return;
                }
                let _ = c.record(|r| {
                    r.restart_count += 1;
                    r.state.status = Status::Exited;
                });
                if let Err(e) = engine.start_locked(&c).await {
                    tracing::warn!("restarting {}: {e}", c.id);
                }
            });
        } else {
            // Under the op lock, and only if nothing restarted it meanwhile: a `restart` holds
            // the lock from its stop to its start, and must not lose its rootfs to this.
            let images = self.images();
            let c = c.clone();
            let engine = self.clone();
            tokio::spawn(async move {
                let _g = c.op.lock().await;
                let st = c.snapshot().state.status;
                if st.is_running() || c.removed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let id = c.id.clone();
                engine.release_mounts(&id, &c.snapshot().mount_points);
                let _ = tokio::task::spawn_blocking(move || images.unmount_snapshot(&id)).await;
            });
        }
    }

    pub(crate) fn should_restart(&self, rec: &ContainerRecord, code: i64) -> bool {
        if rec.manually_stopped {
            return false;
        }
        let (name, max) = restart_policy(&rec.host_config);
        match name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (max == 0 || rec.restart_count < max),
            _ => false,
        }
    }
}

/// Docker's backoff: 100 ms doubling, capped at one minute.
fn restart_delay(count: i64) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << count.clamp(0, 10));
    Duration::from_millis(ms.min(60_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(3), Duration::from_millis(800));
        assert_eq!(restart_delay(40), Duration::from_millis(60_000));
    }
}
