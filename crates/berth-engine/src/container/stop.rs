//! `stop`, `kill` and `restart`.

use std::sync::Arc;
use std::time::Duration;

use crate::container::signal::parse_signal;
use crate::container::wait::wait_exit;
use crate::container::{Entry, Status};
use crate::error::{EngineError, Result};
use crate::Engine;

const DEFAULT_STOP_TIMEOUT: i64 = 10;

impl Engine {
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        self.stop_locked(&c, timeout, signal).await?;
        self.emit_container(&c.id, "stop", &[]);
        Ok(())
    }

    async fn stop_locked(
        &self,
        c: &Arc<Entry>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let rec = c.snapshot();
        if rec.state.status == Status::Restarting {
            // A fact from here on: the pending restart is cancelled even if the disk is full.
            c.record(|r| {
                r.manually_stopped = true;
                r.state.status = Status::Exited;
            });
            return Ok(());
        }
        if !rec.state.status.is_running() {
            return Err(EngineError::NotModified);
        }
        if rec.state.status == Status::Paused {
            // A frozen process cannot act on a signal: thaw first, as Docker does.
            self.thaw(c).await?;
        }
        // Best effort: a full disk must not keep a container from being stopped.
        c.record(|r| r.manually_stopped = true);
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => match Some(rec.config.stop_signal.as_str()).filter(|s| !s.is_empty()) {
                Some(s) => parse_signal(s).unwrap_or(15),
                None => 15,
            },
        };
        let timeout = timeout
            .or(rec.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let rt = self.runtime_dir(&c.id);
        let mut rx = c.signal.subscribe();
        let exits = rx.borrow().exits;
        if sig != 9 {
            self.emit_container(&c.id, "kill", &[("signal", sig.to_string())]);
            let _ = self.runtime().kill(&rt, sig).await;
            let waited = wait_exit(
                &mut rx,
                exits,
                (timeout >= 0).then(|| Duration::from_secs(timeout as u64)),
            )
            .await;
            if waited {
                return Ok(());
            }
        }
        self.emit_container(&c.id, "kill", &[("signal", "9".to_string())]);
        let _ = self.runtime().kill(&rt, 9).await;
        if !wait_exit(&mut rx, exits, Some(Duration::from_secs(30))).await {
            return Err(EngineError::Internal(format!(
                "container {} did not exit after SIGKILL",
                c.id
            )));
        }
        Ok(())
    }

    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => 9,
        };
        let rec = c.snapshot();
        if !rec.state.status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                rec.id
            )));
        }
        if sig == 9 || sig == 15 {
            // Best effort: a full disk must not keep the signal from being delivered.
            c.record(|r| r.manually_stopped = true);
        }
        self.emit_container(&c.id, "kill", &[("signal", sig.to_string())]);
        let mut rx = c.signal.subscribe();
        let exits = rx.borrow().exits;
        self.runtime().kill(&self.runtime_dir(&c.id), sig).await?;
        if rec.state.status == Status::Paused && sig == 9 {
            self.thaw(&c).await?;
        }
        if sig == 9 {
            // Docker: a SIGKILL answers once the container is down (or after 2 s).
            wait_exit(&mut rx, exits, Some(Duration::from_secs(2))).await;
        }
        Ok(())
    }

    pub async fn restart(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        match self.stop_locked(&c, timeout, signal).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        c.update(|r| {
            r.manually_stopped = false;
            if r.state.status == Status::Restarting {
                r.state.status = Status::Exited;
            }
        })?;
        self.start_locked(&c).await
    }
}
