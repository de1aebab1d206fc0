//! Unix socket paths of any length.
//!
//! A unix socket address holds at most 107 bytes of path (`sun_path` is 108 bytes with its
//! NUL), while the directories Berth keeps sockets in (`<exec-root>/containers/<64 hex>`, a
//! build's scratch directory under the data root) may be up to `PATH_MAX` long. A longer path
//! is reached through its directory: the directory is opened (`O_PATH`) and the socket named as
//! `/proc/self/fd/<fd>/<name>` (at most 25 bytes plus the name), which the kernel resolves to
//! the same file. `bind` creates the socket in the real directory, `connect` reaches it, and
//! permissions are the directory's own, as for the long path. A short path is used as it is:
//! no extra system call.
//!
//! The directory stays open as long as the [`SocketPath`] lives: bind or connect while holding it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The longest path a unix socket address holds (without its NUL).
pub const SUN_PATH_MAX: usize = 107;

/// Whether `path` fits a unix socket address as it is.
pub fn fits(path: &Path) -> bool {
    path.as_os_str().len() <= SUN_PATH_MAX
}

/// A path to bind or connect a unix socket at; see the module documentation.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    /// The socket's directory, when `path` goes through `/proc/self/fd`.
    _dir: Option<OwnedFd>,
}

impl SocketPath {
    /// `path` itself when it fits, else a short name for it through its open directory. Fails
    /// when the directory cannot be opened, or the file name alone is too long.
    pub fn new(path: &Path) -> io::Result<SocketPath> {
        if fits(path) {
            return Ok(SocketPath {
                path: path.to_path_buf(),
                _dir: None,
            });
        }
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket path {} names no file", path.display()),
            )
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a NUL-terminated path; the result is a new descriptor we own.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("socket directory {}: {e}", dir.display()),
            ));
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        short.push(name);
        if !fits(&short) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket name {:?} is too long for a unix socket address",
                    name.to_string_lossy()
                ),
            ));
        }
        Ok(SocketPath {
            path: short,
            _dir: Some(dir),
        })
    }

    /// What to hand to `bind` or `connect`.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for SocketPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    /// A directory whose path is `len` bytes long or more.
    fn deep_dir(base: &Path, len: usize) -> PathBuf {
        let mut d = base.to_path_buf();
        while d.as_os_str().len() < len {
            d.push("d123456789abcdef");
        }
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn short_paths_are_used_as_they_are() {
        let p = SocketPath::new(Path::new("/tmp/x.sock")).unwrap();
        assert_eq!(p.as_path(), Path::new("/tmp/x.sock"));
        assert!(fits(&PathBuf::from("/".repeat(107))));
        assert!(!fits(&PathBuf::from("/".repeat(108))));
    }

    #[test]
    fn bind_and_connect_a_socket_deeper_than_sun_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = deep_dir(tmp.path(), 300);
        let sock = dir.join("shim.sock");
        assert!(
            UnixListener::bind(&sock).is_err(),
            "the plain path is too long"
        );

        let l = UnixListener::bind(SocketPath::new(&sock).unwrap()).unwrap();
        assert!(sock.exists(), "the socket is created in the real directory");
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"hi").unwrap();
        });
        let mut s = UnixStream::connect(SocketPath::new(&sock).unwrap()).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, "hi");
    }

    #[test]
    fn a_missing_directory_or_an_overlong_name_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = deep_dir(tmp.path(), 120).join("nope").join("s.sock");
        let e = SocketPath::new(&missing).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let long_name = tmp.path().join("n".repeat(100));
        let e = SocketPath::new(&long_name).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }
}
