//! A runtime without processes, for unit tests of the lifecycle: it records the calls, and a
//! test decides each container's exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::shim::{ShimOptions, ShimStarted};
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::{BoxFuture, ExitReply, Runtime};
use crate::error::{EngineError, Result};

#[derive(Default)]
pub(crate) struct FakeRuntime {
    /// Every call, in order: "spawn <id>", "start <dir>", "kill <dir> <sig>", "wait <dir>"...
    pub calls: Mutex<Vec<String>>,
    /// Shims `alive` answers true for.
    pub alive: Mutex<Vec<PathBuf>>,
    /// What `exit_file` finds.
    pub exit_files: Mutex<HashMap<PathBuf, ExitReply>>,
    /// A pending `wait` per directory, answered by [`FakeRuntime::exit`].
    exits: Mutex<HashMap<PathBuf, watch::Sender<Option<Option<ExitReply>>>>>,
}

impl FakeRuntime {
    fn call(&self, s: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn slot(&self, dir: &Path) -> watch::Receiver<Option<Option<ExitReply>>> {
        let mut m = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(dir.to_path_buf())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Ends the process of `dir`: its `wait` answers `exit` (`None`: the shim vanished).
    pub fn exit(&self, dir: &Path, exit: Option<ExitReply>) {
        let mut m = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        let tx = m
            .entry(dir.to_path_buf())
            .or_insert_with(|| watch::channel(None).0);
        tx.send_replace(Some(exit));
    }
}

impl Runtime for FakeRuntime {
    fn spawn(
        &self,
        opts: ShimOptions,
        _spec: oci_spec::runtime::Spec,
    ) -> BoxFuture<'_, std::result::Result<ShimStarted, berth_runtime::RuntimeError>> {
        self.call(format!("spawn {}", opts.id));
        Box::pin(async {
            Ok(ShimStarted {
                shim_pid: 1,
                init_pid: 2,
            })
        })
    }

    fn start<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>> {
        self.call(format!("start {}", dir.display()));
        Box::pin(async { Ok(()) })
    }

    fn kill<'a>(&'a self, dir: &'a Path, signal: i32) -> BoxFuture<'a, Result<()>> {
        self.call(format!("kill {} {signal}", dir.display()));
        Box::pin(async { Ok(()) })
    }

    fn resize<'a>(&'a self, dir: &'a Path, _h: u32, _w: u32) -> BoxFuture<'a, Result<()>> {
        self.call(format!("resize {}", dir.display()));
        Box::pin(async { Ok(()) })
    }

    fn reopen_log<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>> {
        self.call(format!("reopen_log {}", dir.display()));
        Box::pin(async { Ok(()) })
    }

    fn wait<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<Option<ExitReply>>> {
        self.call(format!("wait {}", dir.display()));
        let mut rx = self.slot(dir);
        Box::pin(async move {
            loop {
                if let Some(e) = rx.borrow_and_update().clone() {
                    return Ok(e);
                }
                if rx.changed().await.is_err() {
                    return Ok(None);
                }
            }
        })
    }

    fn attach<'a>(
        &'a self,
        dir: &'a Path,
        _stdin: bool,
        _stdout: bool,
        _stderr: bool,
    ) -> BoxFuture<'a, Result<BufReader<UnixStream>>> {
        self.call(format!("attach {}", dir.display()));
        Box::pin(async {
            let (a, _b) = UnixStream::pair().map_err(EngineError::from)?;
            Ok(BufReader::new(a))
        })
    }

    fn exit_file(&self, dir: &Path) -> Option<ExitReply> {
        self.exit_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dir)
            .cloned()
    }

    fn alive(&self, dir: &Path) -> bool {
        self.alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|d| d == dir)
    }

    fn cleanup(&self, dir: &Path, _state_root: &Path, _id: &str) {
        self.call(format!("cleanup {}", dir.display()));
    }
}
