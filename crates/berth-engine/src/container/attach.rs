//! Attach: hand a client a connection to the container's shim. A client may attach before the
//! container starts (the docker CLI does, so it misses no output): it waits in `pending_attach`
//! and `start` connects it to the shim after the container is created and before it runs.

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::error::{EngineError, Result};

#[derive(Clone, Copy, Debug, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

pub struct PendingAttach {
    pub opts: AttachOptions,
    pub tx: oneshot::Sender<Result<BufReader<UnixStream>>>,
}

/// A live attachment: stdcopy frames from the shim, raw stdin to it.
pub struct AttachStream {
    pub tty: bool,
    pub io: BufReader<UnixStream>,
}

/// A registered attachment; awaiting it yields the stream once the container runs.
pub type AttachFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AttachStream>> + Send>>;

impl crate::Engine {
    /// Registers the attachment before returning, so a `start` that follows the caller's reply
    /// (the docker CLI starts as soon as it sees the 101) cannot miss it.
    pub async fn attach(&self, name: &str, opts: AttachOptions) -> Result<AttachFuture> {
        let c = self.lookup(name)?;
        let tty = c.snapshot().config.tty;
        // Decide under the op lock so a concurrent start cannot slip between the check and the
        // registration.
        let _g = c.op.lock().await;
        if c.snapshot().state.status.is_running() {
            let io = self
                .runtime()
                .attach(
                    &self.runtime_dir(&c.id),
                    opts.stdin,
                    opts.stdout,
                    opts.stderr,
                )
                .await?;
            return Ok(Box::pin(async move { Ok(AttachStream { tty, io }) }));
        }
        let (tx, rx) = oneshot::channel();
        match c.pending_attach.lock() {
            Ok(mut p) => p.push(PendingAttach { opts, tx }),
            Err(p) => p.into_inner().push(PendingAttach { opts, tx }),
        }
        let name = name.to_string();
        Ok(Box::pin(async move {
            let io = rx
                .await
                .map_err(|_| EngineError::Conflict(format!("container {name} was removed")))??;
            Ok(AttachStream { tty, io })
        }))
    }
}

impl crate::Engine {
    pub async fn resize(&self, name: &str, height: u32, width: u32) -> Result<()> {
        let c = self.lookup(name)?;
        if !c.snapshot().state.status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        self.runtime()
            .resize(&self.runtime_dir(&c.id), height, width)
            .await
    }
}
