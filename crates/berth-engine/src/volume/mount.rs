//! Mounting a volume with driver options, and reading the host's mount table.

use std::collections::HashSet;
use std::path::Path;

use crate::volume::VolumeMeta;

/// The local driver's mount: `type`, `device` and `o` as `mount -t type -o o device _data`.
pub(crate) fn mount_local(meta: &VolumeMeta, target: &Path) -> std::result::Result<(), String> {
    use nix::mount::MsFlags;
    let typ = meta.options.get("type").cloned().unwrap_or_default();
    let mut device = meta.options.get("device").cloned().unwrap_or_default();
    let o = meta.options.get("o").cloned().unwrap_or_default();
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other.to_string()),
        }
    }
    if device.is_empty() {
        device = typ.clone();
    }
    if device.is_empty() {
        return Err("missing required option: \"device\"".into());
    }
    let bind = flags.contains(MsFlags::MS_BIND);
    let fstype = (!bind && !typ.is_empty() && typ != "none").then_some(typ.as_str());
    let data_s = data.join(",");
    let res = nix::mount::mount(
        Some(device.as_str()),
        target,
        fstype,
        flags,
        (!data_s.is_empty()).then_some(data_s.as_str()),
    );
    let desc = format!(
        "failed to mount local volume: mount {device}:{}, flags: {:#x}, data: {data_s}",
        target.display(),
        flags.bits()
    );
    res.map_err(|e| format!("{desc}: {}", e.desc().to_lowercase()))?;
    // A read-only bind needs a remount to take.
    if bind && flags.contains(MsFlags::MS_RDONLY) {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("{desc}: remount read-only: {e}"))?;
    }
    Ok(())
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|mp| unescape_mountinfo(mp) == want)
            .unwrap_or(false)
    })
}

/// The mount holding `path` (canonical) and its propagation peers: (mount point, shared, slave),
/// from the optional fields of /proc/self/mountinfo (`shared:N`, `master:N`).
pub fn mount_propagation(path: &Path) -> Option<(String, bool, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.display().to_string();
    let mut best: Option<(String, bool, bool)> = None;
    for l in info.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| unescape_mountinfo(m)) else {
            continue;
        };
        let inside =
            mp == "/" || want == mp || want.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if !inside || best.as_ref().is_some_and(|(b, _, _)| b.len() > mp.len()) {
            continue;
        }
        let opt = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for f in opt {
            shared |= f.starts_with("shared:");
            slave |= f.starts_with("master:");
        }
        // A later line for the same mount point is a mount on top of the earlier one.
        best = Some((mp, shared, slave));
    }
    best
}

/// The first mount point strictly inside `dir`, if any.
pub(crate) fn mounts_below(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let prefix = format!("{}/", dir.display());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .find(|mp| mp.starts_with(&prefix))
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes used under `path` (not following symlinks, not crossing into other filesystems).
pub fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.nlink() <= 1 || seen.insert(md.ino()) {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
