//! The real runtime: the daemon's side of the shim protocol (see berth-runtime's shim). One
//! typed request line per connection on `<runtime-dir>/shim.sock`, then a reply line (and, for
//! attach, the stream).

use std::path::{Path, PathBuf};

use berth_runtime::shim::protocol::{ShimErrorKind, ShimFailure, ShimReply, ShimRequest};
use berth_runtime::shim::{ShimOptions, ShimStarted};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{BoxFuture, ExitReply, Runtime};
use crate::error::{EngineError, Result};

/// Starts shims as `<berth_exe> shim` and talks to them over their sockets.
pub struct ShimRuntime {
    pub berth_exe: PathBuf,
}

/// A failed request, typed: the shim's kind (and for a start, its fault) decides the status,
/// not its words.
fn shim_error(f: ShimFailure) -> EngineError {
    match f.kind {
        ShimErrorKind::NotRunning => EngineError::Conflict(f.message),
        ShimErrorKind::InvalidSignal => EngineError::InvalidParameter(f.message),
        ShimErrorKind::NoLog => EngineError::Conflict(f.message),
        ShimErrorKind::StartFailed => {
            EngineError::Start(crate::error::StartFailure::new(f.fault, &f.message))
        }
        _ => EngineError::Internal(f.message),
    }
}

/// Opens a connection and sends one request; returns the stream positioned after the reply line.
async fn request(runtime_dir: &Path, req: &ShimRequest) -> Result<(BufReader<UnixStream>, String)> {
    let sock = runtime_dir.join("shim.sock");
    let mut stream = UnixStream::connect(&sock)
        .await
        .map_err(|e| EngineError::Internal(format!("cannot reach container shim: {e}")))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply).await?;
    Ok((reader, reply))
}

/// A request answered by a [`ShimReply`].
async fn simple(runtime_dir: &Path, req: ShimRequest) -> Result<()> {
    let (_s, line) = request(runtime_dir, &req).await?;
    if line.is_empty() {
        return Err(EngineError::Internal(
            "container shim closed the connection".into(),
        ));
    }
    let r: ShimReply = serde_json::from_str(line.trim())?;
    r.into_result().map_err(shim_error)
}

fn exit_reply(e: berth_runtime::shim::ExitStatus) -> ExitReply {
    ExitReply {
        exit_code: e.exit_code as i64,
        finished_at: e.finished_at,
        oom_killed: e.oom_killed,
    }
}

impl Runtime for ShimRuntime {
    fn spawn(
        &self,
        opts: ShimOptions,
        spec: oci_spec::runtime::Spec,
    ) -> BoxFuture<'_, std::result::Result<ShimStarted, berth_runtime::RuntimeError>> {
        let exe = self.berth_exe.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || berth_runtime::shim::spawn_shim(&exe, &opts, &spec))
                .await
                .map_err(|e| berth_runtime::RuntimeError::Shim(e.to_string()))?
        })
    }

    fn start<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>> {
        Box::pin(simple(dir, ShimRequest::Start))
    }

    fn kill<'a>(&'a self, dir: &'a Path, signal: i32) -> BoxFuture<'a, Result<()>> {
        Box::pin(simple(
            dir,
            ShimRequest::Kill {
                signal: signal as i64,
            },
        ))
    }

    fn resize<'a>(&'a self, dir: &'a Path, height: u32, width: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(simple(
            dir,
            ShimRequest::Resize {
                height: height as u64,
                width: width as u64,
            },
        ))
    }

    fn reopen_log<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<()>> {
        Box::pin(simple(dir, ShimRequest::ReopenLog))
    }

    fn wait<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<Option<ExitReply>>> {
        Box::pin(async move {
            let (_s, line) = request(dir, &ShimRequest::Wait).await?;
            if line.trim().is_empty() {
                return Ok(None);
            }
            Ok(
                serde_json::from_str::<berth_runtime::shim::ExitStatus>(line.trim())
                    .ok()
                    .map(exit_reply),
            )
        })
    }

    fn attach<'a>(
        &'a self,
        dir: &'a Path,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> BoxFuture<'a, Result<BufReader<UnixStream>>> {
        Box::pin(async move {
            let req = ShimRequest::Attach {
                stdin,
                stdout,
                stderr,
            };
            let (s, line) = request(dir, &req).await?;
            let r: ShimReply = serde_json::from_str(line.trim())
                .map_err(|_| EngineError::Internal("container shim refused attach".into()))?;
            r.into_result().map_err(shim_error)?;
            Ok(s)
        })
    }

    fn exit_file(&self, dir: &Path) -> Option<ExitReply> {
        berth_runtime::shim::read_exit(dir).map(exit_reply)
    }

    fn alive(&self, dir: &Path) -> bool {
        berth_runtime::shim::shim_alive(dir)
    }

    fn cleanup(&self, dir: &Path, state_root: &Path, id: &str) {
        berth_runtime::shim::cleanup(dir, state_root, id)
    }
}
