//! Container HEALTHCHECK: a task per running container with a healthcheck runs the test as an
//! exec (its output captured), keeps Docker's `State.Health` (status, failing streak, last five
//! results) and emits `health_status` events. The first check runs as soon as the container
//! starts, then every `start_interval` during the start period and every `interval` after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::types::{ExecConfig, Health, HealthConfig, HealthcheckResult};
use tokio::io::AsyncReadExt;

use crate::container::Entry;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

#[derive(Default)]
pub struct HealthTable {
    map: Mutex<HashMap<String, (u64, Health)>>,
    gen: std::sync::atomic::AtomicU64,
}

impl HealthTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Health)>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// The command of a healthcheck, or `None` for none (`NONE`, empty).
pub fn test_command(hc: &HealthConfig) -> Option<Vec<String>> {
    let t = hc.test.as_ref()?;
    match t.first().map(String::as_str) {
        Some("CMD") if t.len() > 1 => Some(t[1..].to_vec()),
        Some("CMD-SHELL") if t.len() > 1 => {
            Some(vec!["/bin/sh".into(), "-c".into(), t[1..].join(" ")])
        }
        _ => None,
    }
}

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Applies one result to the health state (Docker's rules); returns the new status when it
/// changed.
pub fn record(
    h: &mut Health,
    r: HealthcheckResult,
    in_start_period: bool,
    retries: i64,
) -> Option<String> {
    let before = h.status.clone();
    let ok = r.exit_code == 0;
    let log = h.log.get_or_insert_with(Vec::new);
    log.push(r);
    if log.len() > MAX_LOG {
        let extra = log.len() - MAX_LOG;
        log.drain(..extra);
    }
    if ok {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    (h.status != before).then(|| h.status.clone())
}

impl crate::Engine {
    /// `State.Health` of a container, if it has a healthcheck and runs (or ran) it.
    pub fn health_of(&self, id: &str) -> Option<Health> {
        self.inner.health.lock().get(id).map(|(_, h)| h.clone())
    }

    /// Starts the health monitor of a container that just started (or was recovered).
    pub(crate) fn start_health(&self, c: &Arc<Entry>) {
        let rec = c.snapshot();
        let Some(hc) = rec.config.healthcheck.clone() else {
            self.inner.health.lock().remove(&c.id);
            return;
        };
        let Some(cmd) = test_command(&hc) else {
            self.inner.health.lock().remove(&c.id);
            return;
        };
        let gen = self
            .inner
            .health
            .gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.inner.health.lock().insert(
            c.id.clone(),
            (
                gen,
                Health {
                    status: "starting".into(),
                    failing_streak: 0,
                    log: None,
                },
            ),
        );
        let engine = self.clone();
        let id = c.id.clone();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            let interval = dur(hc.interval, DEFAULT_INTERVAL);
            let start_period = dur(hc.start_period, Duration::ZERO);
            let start_interval = dur(hc.start_interval, DEFAULT_START_INTERVAL);
            let timeout = dur(hc.timeout, DEFAULT_TIMEOUT);
            let retries = if hc.retries > 0 {
                hc.retries
            } else {
                DEFAULT_RETRIES
            };
            loop {
                let current = engine
                    .inner
                    .health
                    .lock()
                    .get(&id)
                    .map(|(g, _)| *g == gen)
                    .unwrap_or(false);
                let running = engine
                    .lookup(&id)
                    .map(|c| c.snapshot().state.status == crate::container::Status::Running)
                    .unwrap_or(false);
                if !current {
                    return;
                }
                if running {
                    let result = engine.run_probe(&id, &cmd, timeout).await;
                    let in_start = started.elapsed() < start_period;
                    let changed = {
                        let mut m = engine.inner.health.lock();
                        match m.get_mut(&id) {
                            Some((g, h)) if *g == gen => record(h, result, in_start, retries),
                            _ => return,
                        }
                    };
                    if let Some(status) = changed {
                        engine.emit_container(&id, &format!("health_status: {status}"), &[]);
                    }
                } else if engine
                    .lookup(&id)
                    .map(|c| !c.snapshot().state.status.is_running())
                    .unwrap_or(true)
                {
                    return;
                }
                let wait = if started.elapsed() < start_period {
                    start_interval
                } else {
                    interval
                };
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// One probe: the test as an exec, output captured, bounded by `timeout`.
    async fn run_probe(&self, id: &str, cmd: &[String], timeout: Duration) -> HealthcheckResult {
        let start = now();
        let fail = |code: i64, out: String| HealthcheckResult {
            start: start.clone(),
            end: now(),
            exit_code: code,
            output: out,
        };
        let cfg = ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec_id = match self.exec_create(id, cfg).await {
            Ok(e) => e,
            Err(e) => return fail(-1, e.to_string()),
        };
        let stream = match self.exec_start(&exec_id, false, &None).await {
            Ok(Some(s)) => s,
            Ok(None) => return fail(-1, "no output stream".into()),
            Err(e) => {
                let code = self
                    .exec_inspect(&exec_id)
                    .ok()
                    .and_then(|i| i.exit_code)
                    .unwrap_or(-1);
                return fail(code, e.to_string());
            }
        };
        let mut io = stream.io;
        let collect = async {
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if raw.len() < 4 * MAX_OUTPUT {
                            raw.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
            raw
        };
        let raw = match tokio::time::timeout(timeout, collect).await {
            Ok(r) => r,
            Err(_) => {
                let dir = self.inner.cfg.exec_root.join("exec").join(&exec_id);
                let _ = self.runtime().kill(&dir, 9).await;
                return fail(
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
                );
            }
        };
        let mut demux = berth_api::stdcopy::Demuxer::new();
        demux.push(&raw);
        let mut out = Vec::new();
        while let Ok(Some((_, payload))) = demux.next_frame() {
            out.extend_from_slice(&payload);
        }
        out.truncate(MAX_OUTPUT);
        let _ = self.exec_wait(&exec_id).await;
        let code = self
            .exec_inspect(&exec_id)
            .ok()
            .and_then(|i| i.exit_code)
            .unwrap_or(-1);
        HealthcheckResult {
            start,
            end: now(),
            exit_code: code,
            output: String::from_utf8_lossy(&out).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(code: i64) -> HealthcheckResult {
        HealthcheckResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn commands() {
        let hc = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(
            test_command(&hc(&["CMD-SHELL", "curl -f x || exit 1"])),
            Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "curl -f x || exit 1".into()
            ])
        );
        assert_eq!(
            test_command(&hc(&["CMD", "true"])),
            Some(vec!["true".into()])
        );
        assert_eq!(test_command(&hc(&["NONE"])), None);
        assert_eq!(test_command(&HealthConfig::default()), None);
    }

    #[test]
    fn dockers_health_rules() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        // Failures in the start period do not count.
        assert_eq!(record(&mut h, res(1), true, 2), None);
        assert_eq!(h.failing_streak, 0);
        assert_eq!(record(&mut h, res(0), true, 2), Some("healthy".into()));
        assert_eq!(record(&mut h, res(1), false, 2), None);
        assert_eq!(record(&mut h, res(1), false, 2), Some("unhealthy".into()));
        assert_eq!(h.failing_streak, 2);
        for _ in 0..10 {
            record(&mut h, res(0), false, 2);
        }
        assert_eq!(h.log.as_ref().map(Vec::len), Some(MAX_LOG));
        assert_eq!(h.status, "healthy");
    }
}
