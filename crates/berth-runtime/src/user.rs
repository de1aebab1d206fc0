//! `docker run -u` resolution against the image's /etc/passwd and /etc/group.

use std::path::Path;

use crate::RuntimeError;
use berth_fs::secure_join;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_in_rootfs(rootfs: &Path, path: &str) -> String {
    // A missing or unreadable file is an empty database, as for runc.
    secure_join(rootfs, path)
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves "", "uid", "uid:gid", "name", "name:group" (and mixes) like Docker/runc.
/// Supplementary groups are those listing the user by name, when no group was given.
pub(crate) fn resolve_user(rootfs: &Path, spec: &str) -> Result<ExecUser, RuntimeError> {
    let passwd = parse_passwd(&read_in_rootfs(rootfs, "/etc/passwd"));
    let groups = parse_group(&read_in_rootfs(rootfs, "/etc/group"));
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.name == user_part)
                .ok_or_else(|| RuntimeError::UserNotFound(user_part.to_string()))?,
        ),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part
            .parse::<u32>()
            .map_err(|_| RuntimeError::UserNotFound(user_part.to_string()))?,
    };
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let mut additional_gids = Vec::new();
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| RuntimeError::GroupNotFound(g.to_string()))?,
            };
        }
        None => {
            if let Some(e) = entry {
                for g in &groups {
                    if g.members.iter().any(|m| m == &e.name) && !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--group-add`: each entry a group name of the rootfs's /etc/group or a numeric gid (runc's
/// `GetAdditionalGroups`).
pub(crate) fn additional_groups(rootfs: &Path, add: &[String]) -> Result<Vec<u32>, RuntimeError> {
    if add.is_empty() {
        return Ok(Vec::new());
    }
    let groups = parse_group(&read_in_rootfs(rootfs, "/etc/group"));
    let mut out = Vec::new();
    for g in add {
        let gid = match groups.iter().find(|e| &e.name == g) {
            Some(e) => e.gid,
            None => g
                .parse::<u32>()
                .map_err(|_| RuntimeError::GroupNotFound(g.clone()))?,
        };
        if !out.contains(&gid) {
            out.push(gid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root\nwww-data:x:33:\nnogroup:x:65534:\nmedia:x:20:www,root\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn group_add_by_name_and_id() {
        let d = rootfs();
        let add = |v: &[&str]| {
            additional_groups(
                d.path(),
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(add(&["wheel", "1000", "10"]).unwrap(), vec![10, 1000]);
        assert_eq!(add(&[]).unwrap(), Vec::<u32>::new());
        assert_eq!(
            add(&["nosuch"]).unwrap_err().to_string(),
            "Unable to find group nosuch: no matching entries in group file"
        );
    }

    #[test]
    fn user_forms() {
        let d = rootfs();
        let r = d.path();
        let root = resolve_user(r, "").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.additional_gids, vec![10, 20]);
        let u = resolve_user(r, "www").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 33, vec![20])
        );
        let u = resolve_user(r, "1234").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 0, "/"));
        let u = resolve_user(r, "1234:5678").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        let u = resolve_user(r, "nobody:nogroup").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (65534, 65534, 0));
        let u = resolve_user(r, "65534").unwrap();
        assert_eq!(u.gid, 65534);
        assert_eq!(
            resolve_user(r, "bob").unwrap_err().to_string(),
            "unable to find user bob: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_user(r, "www:staff").unwrap_err().to_string(),
            "Unable to find group staff: no matching entries in group file"
        );
    }
}
