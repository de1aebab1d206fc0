//! The crate's single error type. Display strings follow Docker's wording because clients parse them.

/// How the daemon should classify an error (HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 400
    InvalidArgument,
    /// 500
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidReference(String),
    #[error("{0}")]
    Conflict(String),
    /// Bad input that is not a reference: a malformed archive, a bad `--change` line, ...
    #[error("{0}")]
    InvalidArgument(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("unsafe path in layer archive: {0}")]
    UnsafePath(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON in {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::InvalidReference(_)
            | ImageError::InvalidArgument(_)
            | ImageError::DigestMismatch { .. }
            | ImageError::UnsafePath(_)
            | ImageError::Json { .. } => ErrorKind::InvalidArgument,
            ImageError::Io { .. } | ImageError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An I/O error; one that came from reading the client's archive (see [`BadInput`]) is
    /// the client's fault: a 400 that names no path of ours.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if let Some(e) = BadInput::of(&source) {
            return ImageError::InvalidArgument(e);
        }
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io_path(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        if let Some(e) = BadInput::of(&source) {
            return ImageError::InvalidArgument(e);
        }
        ImageError::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json {
            context: context.into(),
            source,
        }
    }
}

/// Marks an I/O error as coming from the data a client sent (a truncated or corrupt compressed
/// stream), so that wherever it surfaces (copying a layer into the store, unpacking a load) it
/// becomes a 400 about the archive rather than a 500 about the file being written.
#[derive(Debug)]
pub(crate) struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

impl BadInput {
    pub(crate) fn wrap(format: &str, e: std::io::Error) -> std::io::Error {
        if e.get_ref().is_some_and(|r| r.is::<BadInput>()) {
            return e;
        }
        let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "unexpected EOF".to_string()
        } else {
            e.to_string()
        };
        std::io::Error::new(
            e.kind(),
            BadInput(format!(
                "invalid archive: truncated or corrupt {format} data: {what}"
            )),
        )
    }

    fn of(e: &std::io::Error) -> Option<String> {
        e.get_ref()
            .and_then(|r| r.downcast_ref::<BadInput>())
            .map(|b| b.0.clone())
    }
}

impl From<nix::Error> for ImageError {
    fn from(e: nix::Error) -> Self {
        ImageError::Io {
            context: "system call".into(),
            source: std::io::Error::from(e),
        }
    }
}

/// Helper to attach a path to io errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io_path(what, path, e))
    }
}
