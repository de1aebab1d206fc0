//! berth-cri: Berth as a Kubernetes node runtime. A second front door beside `berth-daemon`:
//! the CRI v1 services (`runtime.v1.RuntimeService`, `runtime.v1.ImageService`, gRPC over a
//! unix socket, types from the `k8s-cri` crate) and the streaming server of Exec, Attach and
//! PortForward, all calling the same engine as the Docker API. Pods are the engine's
//! (`berth_engine::pod`); this crate translates.

mod convert;
mod error;
mod image;
mod runtime;
mod spdy;
mod stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::Engine;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

pub use error::CriError;

/// Where the CRI server listens.
#[derive(Clone, Debug)]
pub struct CriOptions {
    /// The gRPC socket (`unix://` stripped).
    pub socket: PathBuf,
    /// The streaming server's address (port 0: any free port).
    pub stream_addr: SocketAddr,
}

/// `unix:///run/berth/cri.sock` or a plain path; `None` for an empty value (no CRI server).
pub fn socket_path(v: &str) -> Result<Option<PathBuf>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let p = v.strip_prefix("unix://").unwrap_or(v);
    if v.contains("://") && !v.starts_with("unix://") {
        return Err(format!(
            "--cri-socket {v:?}: only unix:// sockets are served"
        ));
    }
    if !p.starts_with('/') {
        return Err(format!("--cri-socket {v:?}: the path must be absolute"));
    }
    Ok(Some(PathBuf::from(p)))
}

fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a daemon that died: nobody answers on it.
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Starts the streaming server and the gRPC services; they run until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    opts: CriOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let streams = stream::StreamServer::start(engine.clone(), opts.stream_addr)
        .await
        .map_err(|e| format!("cri streaming server on {}: {e}", opts.stream_addr))?;
    let listener =
        bind(&opts.socket).map_err(|e| format!("cri socket {}: {e}", opts.socket.display()))?;
    tracing::info!(
        "CRI listening on {} (streaming on {})",
        opts.socket.display(),
        streams.addr()
    );
    let runtime = runtime::Runtime::new(engine.clone(), Arc::clone(&streams));
    let images = image::Images { engine };
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let socket = opts.socket.clone();
    Ok(tokio::spawn(async move {
        let res = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(runtime).max_decoding_message_size(16 << 20))
            .add_service(ImageServiceServer::new(images).max_decoding_message_size(16 << 20))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(e) = res {
            tracing::error!("cri server: {e}");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_values() {
        assert_eq!(
            socket_path("unix:///run/berth/cri.sock").unwrap(),
            Some(PathBuf::from("/run/berth/cri.sock"))
        );
        assert_eq!(
            socket_path("/tmp/c.sock").unwrap(),
            Some(PathBuf::from("/tmp/c.sock"))
        );
        assert_eq!(socket_path("").unwrap(), None);
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://rel.sock").is_err());
    }
}
