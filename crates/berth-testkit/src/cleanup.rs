//! Leaves nothing behind under a directory: processes, mounts, files.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Decodes the octal escapes (`\040`) of a mountinfo field.
pub fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                if let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(oct), 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `root` in this process's mount namespace, deepest first.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(unescape_mount_field(mp)))
        .filter(|p| p.starts_with(root))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse((p.components().count(), p.as_os_str().len())));
    v.dedup();
    v
}

/// Lazily unmounts everything under `root`, deepest first, until nothing is left (5 rounds max).
pub fn unmount_all_under(root: &Path) {
    for _ in 0..5 {
        let ms = mounts_under(root);
        if ms.is_empty() {
            return;
        }
        for m in ms {
            if let Ok(c) = CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2(2) with a valid NUL-terminated path.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

/// (pid, ppid, state) of every process.
fn processes() -> Vec<(i32, i32, char)> {
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rp) = stat.rfind(')') else { continue };
        let mut f = stat[rp + 1..].split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        v.push((pid, ppid, state));
    }
    v
}

fn our_ancestors() -> BTreeSet<i32> {
    let procs: HashMap<i32, i32> = processes().into_iter().map(|(p, pp, _)| (p, pp)).collect();
    let mut s = BTreeSet::new();
    let mut p = std::process::id() as i32;
    while p > 0 && s.insert(p) {
        p = procs.get(&p).copied().unwrap_or(0);
    }
    s
}

fn link_under(path: String, root: &Path) -> bool {
    fs::read_link(path)
        .map(|l| l.starts_with(root))
        .unwrap_or(false)
}

/// Whether `pid` looks like a container of ours: its root or cwd is under `root`, or it lives in
/// another mount namespace whose `/` mount names a path under `root` (overlay upperdir…).
fn belongs_to(pid: i32, root: &Path, my_mnt_ns: &Option<PathBuf>) -> bool {
    if link_under(format!("/proc/{pid}/root"), root) || link_under(format!("/proc/{pid}/cwd"), root)
    {
        return true;
    }
    let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if ns.is_none() || ns == *my_mnt_ns {
        return false;
    }
    let needle = root.to_string_lossy().into_owned();
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(&needle))
}

/// Pids of the shims recorded under `<exec_root>/containers/*/shim.pid`.
pub fn shim_pids(exec_root: &Path) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(exec_root.join("containers")) {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_to_string(e.path().join("shim.pid")) {
                if let Ok(p) = t.trim().parse::<i32>() {
                    if p > 1 {
                        v.push(p);
                    }
                }
            }
        }
    }
    v
}

/// SIGKILLs the shims under `exec_root`, their descendants, and any process that belongs to
/// `root` (see above); never this process or its ancestors. Waits up to 2 s for them to go.
pub fn kill_processes_under(root: &Path, exec_root: &Path) {
    let spare = our_ancestors();
    let my_ns = fs::read_link("/proc/self/ns/mnt").ok();
    for _round in 0..3 {
        let procs = processes();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (p, pp, _) in &procs {
            children.entry(*pp).or_default().push(*p);
        }
        let mut victims: BTreeSet<i32> = BTreeSet::new();
        let mut stack: Vec<i32> = shim_pids(exec_root)
            .into_iter()
            .filter(|p| procs.iter().any(|(q, _, _)| q == p))
            .collect();
        for (p, _, st) in &procs {
            if *st != 'Z' && !spare.contains(p) && belongs_to(*p, root, &my_ns) {
                stack.push(*p);
            }
        }
        while let Some(p) = stack.pop() {
            if spare.contains(&p) || !victims.insert(p) {
                continue;
            }
            if let Some(c) = children.get(&p) {
                stack.extend(c);
            }
        }
        if victims.is_empty() {
            return;
        }
        for p in &victims {
            // SAFETY: kill(2) on a pid we found; never ours or an ancestor's.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        crate::wait_until(Duration::from_secs(2), || {
            victims.iter().all(|p| {
                fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| {
                        s.rfind(')')
                            .and_then(|i| s[i + 1..].trim_start().chars().next())
                            == Some('Z')
                    })
                    .unwrap_or(true)
            })
        });
    }
}

/// Container ids (64-hex directory names) recorded under `<root>/**/containers/`.
pub fn container_ids_under(root: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if dir.file_name().is_some_and(|n| n == "containers") && crate::is_hex(&name, 64) {
                ids.insert(name);
            } else if depth < 2 {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    ids
}

/// Removes the (empty) cgroups named after these container ids, in every hierarchy under
/// `/sys/fs/cgroup`, at most four levels deep. rmdir only ever succeeds on an empty cgroup.
pub fn remove_cgroups(ids: &BTreeSet<String>) {
    if ids.is_empty() {
        return;
    }
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    let mut found = Vec::new();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if ids.contains(e.file_name().to_string_lossy().as_ref()) {
                found.push(e.path());
            } else if depth < 3 {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    // Children first; retry briefly while the killed processes are being reaped.
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    crate::wait_until(Duration::from_secs(2), || {
        found.retain(|p| fs::remove_dir(p).is_err() && p.exists());
        found.is_empty()
    });
}

/// Kills what runs under `root`, removes its containers' cgroups, unmounts what is mounted
/// under it, and removes it.
pub fn purge(root: &Path, exec_root: &Path) {
    let ids = container_ids_under(root);
    kill_processes_under(root, exec_root);
    remove_cgroups(&ids);
    unmount_all_under(root);
    if fs::remove_dir_all(root).is_err() {
        // Something may have been mounted late, or a file be immutable: one more round.
        unmount_all_under(root);
        let _ = fs::remove_dir_all(root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_field(r"/x\\y"), r"/x\\y");
        assert_eq!(unescape_mount_field(r"/end\04"), r"/end\04");
    }

    #[test]
    fn nothing_mounted_under_a_fresh_dir() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(mounts_under(d.path()).is_empty());
        assert!(!mounts_under(Path::new("/")).is_empty());
    }
}
