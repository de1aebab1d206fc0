//! Port forwarding into a pod: a TCP connection to `localhost:port` made inside the pod's
//! network namespace (the host's for a host-network pod), handed back as a tokio stream.

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    pub async fn pod_connect(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let netns = self.pod_netns(id)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let std_stream = tokio::task::spawn_blocking(move || {
            let connect = move || {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
                    .map_err(|e| berth_net::NetError::Other(e.to_string()))
            };
            match netns {
                // A socket belongs to the namespace it was made in, wherever it is used.
                Some(ns) => berth_net::netns::enter(&ns, connect),
                None => connect(),
            }
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| {
            EngineError::Internal(format!(
                "failed to connect to localhost:{port} inside the pod {id}: {e}"
            ))
        })?;
        std_stream.set_nonblocking(true)?;
        Ok(tokio::net::TcpStream::from_std(std_stream)?)
    }
}
