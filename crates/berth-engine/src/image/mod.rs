//! Images as the API presents them: the local store's operations (`local`), the registries
//! (`distribution`), builds (`build`) and prune, each run off the async threads.

pub mod build;
mod distribution;
mod local;
mod prune;

pub use distribution::{RegistryConfig, Transfer};

use std::io::Write;

use berth_image::{ErrorKind, ImageError};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::Engine;

pub(crate) fn image_err(e: ImageError) -> EngineError {
    match e.kind() {
        ErrorKind::NotFound => EngineError::NotFound(e.to_string()),
        ErrorKind::Conflict => EngineError::Conflict(e.to_string()),
        ErrorKind::InvalidArgument => EngineError::InvalidParameter(e.to_string()),
        ErrorKind::Internal => EngineError::Internal(e.to_string()),
    }
}

/// Re-types a value between two serde shapes of the same JSON (image store -> API).
fn retype<A: serde::Serialize, B: serde::de::DeserializeOwned + Default>(a: &A) -> B {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// A `Write` that feeds an HTTP response body from a blocking thread.
pub struct ChannelWriter(pub mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Engine {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&berth_image::ImageStore) -> std::result::Result<T, ImageError> + Send + 'static,
    ) -> Result<T> {
        let store = self.images();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(EngineError::internal)?
            .map_err(image_err)
    }
}

/// Refuses a platform specifier Docker would not parse (`pull`, `build`), with its words, before
/// any work starts.
pub fn check_platform(spec: &str) -> crate::Result<()> {
    berth_image::config::parse_platform(spec)
        .map(|_| ())
        .map_err(EngineError::InvalidParameter)
}
