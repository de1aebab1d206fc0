//! The startup sweep of the daemon's temporary areas: what a daemon killed mid-operation left
//! behind and nothing else would ever remove.
//!
//! - `<data-root>/tmp/`: scratch space only (a build's unpacked context `build-<id>/`, the
//!   builder's `copy-*` dirs and layer files, request bodies spooled by the daemon). No
//!   operation survives a daemon restart, so everything in it goes.
//! - Atomic-write leftovers (berth-fs's `.<name>.<tag>.tmp`, and earlier versions' names) in
//!   the engine's metadata dirs:
//!   the data root itself, `containers/<id>/`, `volumes/<name>/`, `network/**`, `build-cache/`,
//!   `build-parents/`. The file they were to replace is intact (rename is the commit point).
//! - `<exec-root>/exec/<id>/` whose shim is gone: an exec that ended while no daemon ran.
//!
//! The image store purges its own `image/tmp` and `.tmp-*` entries when it opens. Nothing here
//! crosses into another filesystem: a mount point found in scratch space is detached first,
//! so the sweep never deletes through it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Runs the sweep; problems are logged, never fatal (a leftover costs space, not correctness).
pub(crate) fn sweep(data_root: &Path, exec_root: &Path) {
    let tmp = data_root.join("tmp");
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        let dev = std::fs::metadata(&tmp).map(|m| m.dev()).ok();
        for e in rd.flatten() {
            let p = e.path();
            match remove_on_device(&p, dev) {
                Ok(()) => tracing::info!("removed leftover scratch {}", p.display()),
                Err(err) => tracing::warn!("removing leftover scratch {}: {err}", p.display()),
            }
        }
    }
    let mut dirs = vec![
        data_root.to_path_buf(),
        data_root.join("build-cache"),
        data_root.join("build-parents"),
        data_root.join("network"),
        data_root.join("network").join("ipam"),
        data_root.join("network").join("containers"),
    ];
    for parent in ["containers", "volumes"] {
        if let Ok(rd) = std::fs::read_dir(data_root.join(parent)) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    for d in dirs {
        remove_atomic_leftovers(&d);
    }
    if let Ok(rd) = std::fs::read_dir(exec_root.join("exec")) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !shim_alive(&p) {
                if let Err(err) = remove_on_device(&p, None) {
                    tracing::warn!("removing finished exec dir {}: {err}", p.display());
                }
            }
        }
    }
}

/// The temp name of an atomic write: berth-fs's (`.<name>.<16 hex>.tmp`), or the
/// `.<name>.tmp<pid>` and `.<key>.tmp` of earlier versions.
fn is_atomic_leftover(name: &str) -> bool {
    if berth_fs::atomic::is_temp_name(name) {
        return true;
    }
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rfind(".tmp") {
        Some(i) if i > 0 => rest[i + 4..].bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

fn remove_atomic_leftovers(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && name.to_str().is_some_and(is_atomic_leftover) {
            let p = e.path();
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!("removed leftover temp file {}", p.display()),
                Err(err) => tracing::warn!("removing leftover temp file {}: {err}", p.display()),
            }
        }
    }
}

/// Whether the shim recorded in `dir/shim.pid` still runs.
fn shim_alive(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(|pid| pid > 0 && Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes `p` and everything below it without crossing into another filesystem: a directory
/// on another device than `dev` (a mount point) is detached first, then removed empty of it.
fn remove_on_device(p: &Path, dev: Option<u64>) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(p)?;
    if !md.is_dir() {
        return std::fs::remove_file(p);
    }
    let dev = dev.unwrap_or(md.dev());
    if md.dev() != dev {
        nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| std::io::Error::other(format!("unmounting {}: {e}", p.display())))?;
        // What is there now is the directory on our own filesystem.
        return remove_on_device(p, Some(dev));
    }
    for e in std::fs::read_dir(p)? {
        remove_on_device(&e?.path(), Some(dev))?;
    }
    std::fs::remove_dir(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names() {
        assert!(is_atomic_leftover(".container.json.tmp1234"));
        assert!(is_atomic_leftover(".abc.tmp"));
        assert!(is_atomic_leftover(".container.json.0123456789abcdef.tmp"));
        assert!(!is_atomic_leftover("container.json"));
        assert!(!is_atomic_leftover(".tmp"));
        assert!(!is_atomic_leftover(".x.tmpfoo"));
        assert!(!is_atomic_leftover(".hidden"));
    }

    #[test]
    fn sweeps_scratch_leftovers_and_dead_exec_dirs() {
        let t = tempfile::tempdir().expect("tmp");
        let data = t.path().join("data");
        let exec = t.path().join("exec");
        let build = data.join("tmp").join("build-abc").join("ctx").join("sub");
        std::fs::create_dir_all(&build).expect("mkdir");
        std::fs::write(build.join("f"), "x").expect("write");
        std::fs::write(data.join("tmp").join("layer-1-2"), "x").expect("write");
        let c = data.join("containers").join("c1");
        std::fs::create_dir_all(&c).expect("mkdir");
        std::fs::write(c.join("container.json"), "{}").expect("write");
        std::fs::write(c.join(".container.json.tmp99"), "{").expect("write");
        std::fs::create_dir_all(data.join("build-cache")).expect("mkdir");
        std::fs::write(data.join("build-cache").join(".k.tmp"), "").expect("write");
        std::fs::write(data.join("build-cache").join("k"), "id").expect("write");
        let dead = exec.join("exec").join("dead");
        std::fs::create_dir_all(&dead).expect("mkdir");
        std::fs::write(dead.join("shim.pid"), "999999999").expect("write");
        let live = exec.join("exec").join("live");
        std::fs::create_dir_all(&live).expect("mkdir");
        std::fs::write(live.join("shim.pid"), std::process::id().to_string()).expect("write");

        sweep(&data, &exec);

        assert!(data.join("tmp").exists());
        assert_eq!(std::fs::read_dir(data.join("tmp")).expect("ls").count(), 0);
        assert!(c.join("container.json").exists());
        assert!(!c.join(".container.json.tmp99").exists());
        assert!(data.join("build-cache").join("k").exists());
        assert!(!data.join("build-cache").join(".k.tmp").exists());
        assert!(!dead.exists());
        assert!(live.exists());
    }
}
