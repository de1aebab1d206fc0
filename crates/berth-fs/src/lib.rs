//! berth-fs: the one place where Berth touches paths inside a root it does not trust (a
//! container's rootfs, a layer, a build context) and writes files that must survive a crash.
//!
//! - [`root`]: resolve a path inside a root as a process chrooted there would, never leaving
//!   it: `openat2(RESOLVE_IN_ROOT)` where the kernel has it, a bounded userspace walk otherwise
//!   (40 symlinks, the kernel's limit).
//! - [`extract`]: the one tar extractor (layers, `load`/`import`, `docker cp`, build contexts):
//!   every directory is opened with `O_NOFOLLOW` from the destination down, so no entry is ever
//!   written through a symlink; `..` is refused; overlay whiteouts on request.
//! - [`atomic`]: write to a unique temp file beside the target, fsync, rename; the temp file is
//!   removed when anything fails.
//!
//! No Berth crate is a dependency: every other crate may use this one.

pub mod atomic;
pub mod extract;
pub mod root;
pub mod sys;

pub use atomic::{write_atomic, write_replace};
pub use extract::{extract, ExtractOptions, Whiteouts};
pub use root::{mkdir_in_root, open_in_root, resolve_in_root, secure_join, MAX_SYMLINKS};

/// Errors of the extractor. The resolver and the writer return `std::io::Error`: their callers
/// only ever report them.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An archive entry would land outside the destination, or write through a symlink.
    #[error("unsafe path in archive: {0}")]
    UnsafePath(String),
    /// The archive itself is malformed.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    /// An entry cannot replace what is there (`docker cp` without overwrite of dir/non-dir).
    #[error("{0}")]
    Conflict(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    pub(crate) fn io(
        op: &'static str,
        path: impl std::fmt::Display,
        source: std::io::Error,
    ) -> Self {
        FsError::Io {
            op,
            path: path.to_string(),
            source,
        }
    }
}
