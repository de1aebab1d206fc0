//! HTTP/2 over a hijacked connection, both ways: the daemon serves gRPC on `/grpc` (the
//! client speaks HTTP/2 after the 101), and is the gRPC client on `/session` (the client
//! serves its attachables there).

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `svc` (tonic routes) on `io` until the client closes it.
pub async fn serve<IO, S, B>(io: IO, svc: S)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // gRPC clients (grpc-go) send large messages; hyper's defaults are small windows.
    b.initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .max_frame_size(1 << 20)
        .max_send_buf_size(4 << 20)
        .max_concurrent_streams(1000);
    if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!("grpc connection ended: {e}");
    }
}

/// A gRPC channel over one HTTP/2 client connection (a session's hijacked socket).
#[derive(Clone)]
pub struct H2Channel {
    send: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
}

impl H2Channel {
    /// Starts the HTTP/2 client side on `io`; the connection is driven by a task that ends
    /// when the peer closes it (then `closed` resolves).
    pub async fn connect<IO>(
        io: IO,
    ) -> Result<(H2Channel, tokio::sync::oneshot::Receiver<()>), hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .max_frame_size(1 << 20)
            .keep_alive_interval(None)
            .handshake(TokioIo::new(io))
            .await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("session connection ended: {e}");
            }
            let _ = tx.send(());
        });
        Ok((H2Channel { send }, rx))
    }

    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(req))
    }
}
