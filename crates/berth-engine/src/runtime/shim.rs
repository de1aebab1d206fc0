//! The daemon's side of the shim protocol (see berth-runtime's shim): one JSON request line per
//! connection on `<runtime-dir>/shim.sock`, then a JSON reply line (and, for attach, the stream).

use std::path::Path;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{EngineError, Result};

#[derive(Debug, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct ExitReply {
    pub exit_code: i64,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
}

/// The exit a shim recorded in `exit.json`, for when the shim itself is gone.
pub fn read_exit_file(runtime_dir: &Path) -> Option<ExitReply> {
    berth_runtime::shim::read_exit(runtime_dir).map(|e| ExitReply {
        exit_code: e.exit_code as i64,
        finished_at: e.finished_at,
        oom_killed: e.oom_killed,
    })
}

/// Opens a connection and sends one request; returns the stream positioned after the reply line.
pub async fn request(
    runtime_dir: &Path,
    req: &serde_json::Value,
) -> Result<(BufReader<UnixStream>, String)> {
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

/// A request whose reply is `{"ok":..,"error":..}`.
pub async fn simple(runtime_dir: &Path, req: serde_json::Value) -> Result<()> {
    let (_s, line) = request(runtime_dir, &req).await?;
    if line.is_empty() {
        return Err(EngineError::Internal(
            "container shim closed the connection".into(),
        ));
    }
    let r: Reply = serde_json::from_str(line.trim())?;
    if r.ok {
        Ok(())
    } else {
        Err(EngineError::Internal(
            r.error.unwrap_or_else(|| "shim request failed".into()),
        ))
    }
}

pub async fn start(runtime_dir: &Path) -> Result<()> {
    simple(runtime_dir, serde_json::json!({"op": "start"})).await
}

pub async fn kill(runtime_dir: &Path, signal: i32) -> Result<()> {
    simple(
        runtime_dir,
        serde_json::json!({"op": "kill", "signal": signal}),
    )
    .await
}

pub async fn resize(runtime_dir: &Path, height: u32, width: u32) -> Result<()> {
    simple(
        runtime_dir,
        serde_json::json!({"op": "resize", "height": height, "width": width}),
    )
    .await
}

/// Blocks until the container exits. `None` if the shim went away without answering.
pub async fn wait(runtime_dir: &Path) -> Result<Option<ExitReply>> {
    let (_s, line) = request(runtime_dir, &serde_json::json!({"op": "wait"})).await?;
    if line.trim().is_empty() {
        return Ok(None);
    }
    Ok(serde_json::from_str(line.trim()).ok())
}

/// Attaches; the returned stream carries stdcopy frames out and raw stdin in.
pub async fn attach(
    runtime_dir: &Path,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<BufReader<UnixStream>> {
    let (s, line) = request(
        runtime_dir,
        &serde_json::json!({"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}),
    )
    .await?;
    let r: Reply = serde_json::from_str(line.trim())
        .map_err(|_| EngineError::Internal("container shim refused attach".into()))?;
    if !r.ok {
        return Err(EngineError::Internal(
            r.error.unwrap_or_else(|| "attach failed".into()),
        ));
    }
    Ok(s)
}
