//! Network namespaces the daemon owns: made on a throwaway thread, kept alive by a bind mount of
//! its ns file at `<exec-root>/netns/<id>`, so they outlive the daemon (live restore).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::netlink::Netlink;
use crate::{NetError, Result};

fn os(ctx: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Netns(format!("{ctx}: {e}"))
}

/// Runs `f` on a fresh thread, so no namespace change leaks into the daemon's threads.
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)
        .map_err(|e| os("spawning netns thread", e))?
        .join()
        .map_err(|_| os("netns thread", "panicked"))?
}

/// Creates a network namespace pinned at `path`, brings its loopback up and runs `f` inside it
/// with a netlink socket of the namespace. On error nothing is left at `path`.
pub fn create<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&mut Netlink) -> Result<T> + Send + 'static,
) -> Result<T> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| os("creating netns dir", e))?;
    }
    // A leftover of a crash: replace it.
    remove(path);
    File::create(path).map_err(|e| os("creating netns file", e))?;
    let p = path.to_path_buf();
    let r = on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| os("unshare(CLONE_NEWNET)", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| os("bind-mounting netns", e))?;
        let mut nl = Netlink::open()?;
        if let Some(lo) = nl.link_index("lo")? {
            nl.set_link(lo, true, None, None)?;
        }
        f(&mut nl)
    });
    if r.is_err() {
        remove(path);
    }
    r
}

/// Runs `f` inside the namespace pinned at `path`.
pub fn enter<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = File::open(path).map_err(|e| os(&format!("opening {}", path.display()), e))?;
    on_thread(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| os("setns", e))?;
        f()
    })
}

/// Whether `path` is a pinned namespace (a mount point, not just a file).
pub fn is_pinned(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(path), path.parent()) else {
        return false;
    };
    match std::fs::metadata(parent) {
        Ok(pm) => m.dev() != pm.dev(),
        Err(_) => false,
    }
}

/// Unpins and deletes the namespace file; the namespace goes when its last user does.
pub fn remove(path: &Path) {
    for _ in 0..4 {
        if umount2(path, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = std::fs::remove_file(path);
}
