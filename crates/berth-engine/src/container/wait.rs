//! `wait` with Docker's conditions (`not-running`, `next-exit`, `removed`), and the short memory of
//! exits that lets a `wait` sent after the fact still get its answer.

use std::sync::Arc;
use std::time::Duration;

use crate::container::Entry;
use crate::error::{EngineError, Result};
use crate::Engine;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::InvalidParameter(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

impl Engine {
    /// Blocks until `cond`; returns the exit code. Registers before returning from the lookup,
    /// so a `wait` sent before `start` sees the exit that follows.
    pub async fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = i64>> {
        let c = match self.lookup(name) {
            Ok(c) => c,
            Err(e) => {
                // The docker CLI sends `wait` and `start` on separate connections; an `--rm`
                // container may be gone before its wait arrives. Its exit is still known.
                if cond != WaitCondition::NotRunning {
                    if let Some(code) = self.recently_removed(name) {
                        return Ok(futures_ready(code));
                    }
                }
                return Err(e);
            }
        };
        let rx = c.signal.subscribe();
        let start = rx.borrow().clone();
        if cond == WaitCondition::NextExit && !start.running && !start.exit_claimed {
            // Same race for `next-exit`: an exit nobody has been told of, moments ago, is the
            // one this waiter was sent for.
            if start
                .last_exit
                .is_some_and(|t| t.elapsed() < UNCLAIMED_EXIT_WINDOW)
            {
                c.signal.send_modify(|s| s.exit_claimed = true);
                return Ok(futures_ready(start.exit_code));
            }
        }
        Ok(futures_wait(c, rx, start, cond))
    }

    /// Remembers a removed container's exit code for a short while (see `wait`).
    pub(crate) fn remember_removed(&self, id: &str, code: i64) {
        let mut m = match self.inner.removed.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.retain(|_, (_, t)| t.elapsed() < UNCLAIMED_EXIT_WINDOW);
        m.insert(id.to_string(), (code, std::time::Instant::now()));
    }

    fn recently_removed(&self, id: &str) -> Option<i64> {
        let m = match self.inner.removed.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.get(id)
            .filter(|(_, t)| t.elapsed() < UNCLAIMED_EXIT_WINDOW)
            .map(|(c, _)| *c)
    }
}

/// How long an exit nobody waited for, or a removal, still answers a late `wait`.
const UNCLAIMED_EXIT_WINDOW: Duration = Duration::from_secs(5);

fn futures_ready(code: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>> {
    Box::pin(async move { code })
}

fn futures_wait(
    c: Arc<Entry>,
    mut rx: tokio::sync::watch::Receiver<crate::container::Signal>,
    start: crate::container::Signal,
    cond: WaitCondition,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>> {
    Box::pin(async move {
        if cond == WaitCondition::NotRunning && !start.running {
            return start.exit_code;
        }
        loop {
            {
                let s = rx.borrow_and_update().clone();
                let done = match cond {
                    WaitCondition::NotRunning => !s.running || s.removed,
                    WaitCondition::NextExit => s.exits > start.exits || s.removed,
                    WaitCondition::Removed => s.removed,
                };
                if done {
                    // A waiter that saw the exit happen (attach, start -a) has been told of it;
                    // a later `next-exit` must not be answered with it.
                    if cond == WaitCondition::NextExit || start.running {
                        c.signal.send_modify(|s| s.exit_claimed = true);
                    }
                    return s.exit_code;
                }
            }
            if rx.changed().await.is_err() {
                return rx.borrow().exit_code;
            }
        }
    })
}

/// Waits for an exit past `seen`; false on timeout.
pub(crate) async fn wait_exit(
    rx: &mut tokio::sync::watch::Receiver<crate::container::Signal>,
    seen: u64,
    timeout: Option<Duration>,
) -> bool {
    let fut = async {
        loop {
            if rx.borrow_and_update().exits > seen {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(false),
        None => fut.await,
    }
}
