//! The crate's one error type. Server-side protocol errors carry a distribution-spec code
//! (`MANIFEST_UNKNOWN`, ...) and are rendered as `{"errors":[{"code","message","detail"}]}`.

use std::fmt;

/// Error codes of the OCI distribution spec (plus the few distribution/distribution adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    PaginationNumberInvalid,
    RangeInvalid,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The message distribution/distribution sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => "blob unknown to registry",
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::TagInvalid => "manifest tag did not match URI",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "The operation is unsupported.",
            ErrorCode::PaginationNumberInvalid => "invalid number of results requested",
            ErrorCode::RangeInvalid => "invalid content range",
            ErrorCode::Unknown => "unknown error",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown
            | ErrorCode::ManifestBlobUnknown => 404,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::Unknown => 500,
            _ => 400,
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        const ALL: [ErrorCode; 17] = [
            ErrorCode::BlobUnknown,
            ErrorCode::BlobUploadInvalid,
            ErrorCode::BlobUploadUnknown,
            ErrorCode::DigestInvalid,
            ErrorCode::ManifestBlobUnknown,
            ErrorCode::ManifestInvalid,
            ErrorCode::ManifestUnknown,
            ErrorCode::NameInvalid,
            ErrorCode::NameUnknown,
            ErrorCode::SizeInvalid,
            ErrorCode::TagInvalid,
            ErrorCode::Unauthorized,
            ErrorCode::Denied,
            ErrorCode::Unsupported,
            ErrorCode::PaginationNumberInvalid,
            ErrorCode::RangeInvalid,
            ErrorCode::Unknown,
        ];
        ALL.into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A distribution-spec error: produced by the server, or received by the client.
    #[error("{message}")]
    Distribution {
        code: ErrorCode,
        message: String,
        detail: Option<serde_json::Value>,
        /// HTTP status to answer with (the code's default unless overridden).
        status: u16,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    /// Network / HTTP failure talking to a registry.
    #[error("{0}")]
    Http(String),
    /// 401/403 from a registry, in Docker's wording.
    #[error("{0}")]
    Unauthorized(String),
    /// The image or tag does not exist on the registry (Docker: "manifest for x not found").
    #[error("{0}")]
    NotFound(String),
    /// Content whose digest does not match what was asked for.
    #[error("{0}")]
    DigestMismatch(String),
    #[error("{0}")]
    InvalidReference(String),
    /// A manifest/index the client can not use (no matching platform, unknown media type...).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Config(String),
}

impl RegistryError {
    pub fn code(code: ErrorCode) -> RegistryError {
        RegistryError::Distribution {
            code,
            message: code.message().to_string(),
            detail: None,
            status: code.status(),
        }
    }

    pub fn with_detail(code: ErrorCode, detail: impl Into<serde_json::Value>) -> RegistryError {
        RegistryError::Distribution {
            code,
            message: code.message().to_string(),
            detail: Some(detail.into()),
            status: code.status(),
        }
    }

    pub fn with_status(code: ErrorCode, status: u16) -> RegistryError {
        RegistryError::Distribution {
            code,
            message: code.message().to_string(),
            detail: None,
            status,
        }
    }

    /// The status the Engine API answers with when this error ends a request before any
    /// progress was streamed (Docker's mapping: unknown image/tag and denied pulls are 404,
    /// bad credentials on `/auth` 401, bad references 400).
    pub fn http_status(&self) -> u16 {
        match self {
            RegistryError::NotFound(_) => 404,
            RegistryError::Unauthorized(_) => 401,
            RegistryError::InvalidReference(_) | RegistryError::Config(_) => 400,
            RegistryError::Image(e) => match e.kind() {
                berth_image::ErrorKind::NotFound => 404,
                berth_image::ErrorKind::InvalidArgument => 400,
                berth_image::ErrorKind::Conflict => 409,
                _ => 500,
            },
            RegistryError::Distribution { status, .. } if *status == 404 => 404,
            _ => 500,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }
}

pub(crate) trait IoCtx<T> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, RegistryError>;
}

impl<T> IoCtx<T> for Result<T, std::io::Error> {
    fn ctx(self, what: &str, path: &std::path::Path) -> Result<T, RegistryError> {
        self.map_err(|e| RegistryError::io(format!("{what} {}", path.display()), e))
    }
}
