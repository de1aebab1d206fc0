//! The runtime seam: what the engine needs from the processes it runs, as a trait (as
//! containerd's `PlatformRuntime`), so the lifecycle logic — exit handling, restart policies,
//! recovery — is tested with [`fake::FakeRuntime`] and no root. [`shim::ShimRuntime`] is the
//! real one: the client of the per-container shims (`berth shim`), over the typed protocol of
//! `berth_runtime::shim::protocol`.
//!
//! Every call names the shim by its runtime directory (`<exec-root>/containers/<id>` for a
//! container, `<exec-root>/exec/<id>` for an exec).

#[cfg(test)]
pub(crate) mod fake;
pub mod shim;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use berth_runtime::shim::{ShimOptions, ShimStarted};
use tokio::io::BufReader;
use tokio::net::UnixStream;

use crate::error::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a process ended, as the shim recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReply {
    pub exit_code: i64,
    pub finished_at: String,
    pub oom_killed: bool,
}

pub trait Runtime: Send + Sync {
    /// Writes the bundle and starts a shim that creates the container; returns once it is
    /// created (not yet running). Blocking work runs off the async workers.
    fn spawn(
        &self,
        opts: ShimOptions,
        spec: oci_spec::runtime::Spec,
    ) -> BoxFuture<'_, std::result::Result<ShimStarted, berth_runtime::RuntimeError>>;
    /// Runs the created container's process.
    fn start<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>>;
    fn kill<'a>(&'a self, dir: &'a Path, signal: i32) -> BoxFuture<'a, Result<()>>;
    fn resize<'a>(&'a self, dir: &'a Path, height: u32, width: u32) -> BoxFuture<'a, Result<()>>;
    /// Opens the container's log file again (a CRI container's, after the kubelet renamed it).
    fn reopen_log<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>>;
    /// Waits for the exit; `None` if the shim went away without answering.
    fn wait<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<Option<ExitReply>>>;
    /// A stream of stdcopy frames out and raw stdin in.
    fn attach<'a>(
        &'a self,
        dir: &'a Path,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> BoxFuture<'a, Result<BufReader<UnixStream>>>;
    /// The exit the shim left on disk, for when the shim itself is gone.
    fn exit_file(&self, dir: &Path) -> Option<ExitReply>;
    /// Whether a shim still serves `dir` (after a daemon restart).
    fn alive(&self, dir: &Path) -> bool;
    /// Removes what a run left: the OCI runtime's state, cgroups, the shim's files.
    fn cleanup(&self, dir: &Path, state_root: &Path, id: &str);
}
