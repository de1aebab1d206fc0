//! Store-level tests with images built in the test (no network, no fixtures).

use crate::fsutil::sha256_digest;
use crate::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<ImageStore>();
}

pub(crate) enum E<'a> {
    F(&'a str, &'a [u8]),
    D(&'a str),
    L(&'a str, &'a str),
}

pub(crate) fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            E::F(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::D(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::L(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(crate) fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let history: Vec<serde_json::Value> = (0..layers.len())
        .map(|i| {
            serde_json::json!({"created": "2024-05-01T10:00:00Z", "created_by": format!("step {i}")})
        })
        .chain(std::iter::once(serde_json::json!({
            "created": "2024-05-01T10:00:01Z", "created_by": "CMD", "empty_layer": true
        })))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:01Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
        "x-unknown": {"kept": true},
    }))
    .unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, path, data).unwrap();
}

/// A legacy docker-save archive (Docker < 25). `images`: (config, layers, tags). Repeated layers
/// are symlinks to the first copy, as Docker writes them.
/// (config, layers, tags)
type ArchiveImage<'a> = (Vec<u8>, Vec<Vec<u8>>, Vec<&'a str>);

pub(crate) fn legacy_archive(images: &[ArchiveImage]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    for (n, (cfg, layers, tags)) in images.iter().enumerate() {
        let cfg_hex = sha256_digest(cfg)[7..].to_string();
        add(&mut b, &format!("{cfg_hex}.json"), cfg);
        let mut paths = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let dir = format!("img{n}layer{i}");
            let p = format!("{dir}/layer.tar");
            let d = sha256_digest(l);
            if let Some(first) = seen.get(&d) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &p, format!("../{first}")).unwrap();
            } else {
                add(&mut b, &p, l);
                seen.insert(d, p.clone());
            }
            paths.push(p);
        }
        manifest.push(serde_json::json!({"Config": format!("{cfg_hex}.json"), "RepoTags": tags, "Layers": paths}));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// A plain OCI image layout with gzip layers.
fn oci_archive(cfg: &[u8], layers: &[Vec<u8>], ref_names: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let blob = |b: &mut tar::Builder<Vec<u8>>, data: &[u8]| {
        let d = sha256_digest(data);
        add(b, &format!("blobs/sha256/{}", &d[7..]), data);
        d
    };
    let cfg_d = blob(&mut b, cfg);
    let mut lds = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let d = blob(&mut b, &gz);
        lds.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": gz.len()}));
    }
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg.len()},
        "layers": lds,
    }))
    .unwrap();
    let md = blob(&mut b, &m);
    let manifests: Vec<serde_json::Value> = ref_names
        .iter()
        .map(|n| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": n}}))
        .collect();
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(
        &mut b,
        "index.json",
        &serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap(),
    );
    b.into_inner().unwrap()
}

fn base_layers() -> (Vec<u8>, Vec<u8>) {
    let l1 = layer(&[
        E::D("etc/"),
        E::F("etc/motd", b"hello\n"),
        E::D("var/"),
        E::D("var/lib/"),
        E::F("var/lib/old", b"old"),
        E::F("keep", b"k"),
        E::D("bin/"),
        E::F("bin/busybox", b"\x7fELF"),
        E::L("bin/sh", "busybox"),
    ]);
    let l2 = layer(&[
        E::F("etc/.wh.motd", b""),
        E::D("var/"),
        E::F("var/.wh..wh..opq", b""),
        E::F("var/new", b"new"),
    ]);
    (l1, l2)
}

fn open_store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(&t.path().join("image")).unwrap();
    (t, s)
}

fn never(_: &str) -> Option<(String, bool)> {
    None
}

fn count_dir(p: &Path) -> usize {
    fs::read_dir(p).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn legacy_load_get_list_idempotent() {
    let (t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg_a = config_for(&[&l1], "a");
    let cfg_b = config_for(&[&l1, &l2], "b");
    let ar = legacy_archive(&[
        (
            cfg_a.clone(),
            vec![l1.clone()],
            vec!["busybox:latest", "busybox:1.36"],
        ),
        (cfg_b.clone(), vec![l1.clone(), l2.clone()], vec![]),
    ]);
    let lines = s.load(&mut &ar[..]).unwrap();
    let id_b = sha256_digest(&cfg_b);
    assert_eq!(
        lines,
        vec![
            "Loaded image: busybox:latest".to_string(),
            "Loaded image: busybox:1.36".into(),
            format!("Loaded image ID: {id_b}"),
        ]
    );
    let img = s.get("busybox").unwrap();
    assert_eq!(img.id, sha256_digest(&cfg_a));
    assert_eq!(img.repo_tags.len(), 2);
    assert_eq!(img.size, 6 + 3 + 1 + 4);
    assert_eq!(
        img.config.config.as_ref().unwrap().cmd.as_deref(),
        Some(&["a".to_string()][..])
    );
    assert!(img.config.extra.contains_key("x-unknown"));
    assert_eq!(s.get("docker.io/library/busybox:1.36").unwrap().id, img.id);
    assert_eq!(s.get(&img.id).unwrap().id, img.id);
    assert_eq!(s.get(&img.id[7..]).unwrap().id, img.id);
    assert_eq!(s.get(&img.id[7..15]).unwrap().id, img.id);
    assert_eq!(s.get(&id_b).unwrap().repo_tags.len(), 0);
    assert_eq!(s.list().unwrap().len(), 2);
    let layers = t.path().join("image/layers");
    assert_eq!(count_dir(&layers), 2);
    // Idempotent: same answer, nothing new on disk.
    let lines2 = s.load(&mut &ar[..]).unwrap();
    assert_eq!(lines, lines2);
    assert_eq!(count_dir(&layers), 2);
    assert_eq!(s.list().unwrap().len(), 2);
    // Survives a reopen.
    drop(s);
    let s = ImageStore::open(&t.path().join("image")).unwrap();
    assert_eq!(s.get("busybox:1.36").unwrap().id, img.id);
    assert_eq!(s.list().unwrap().len(), 2);
}

#[test]
fn lookup_errors_use_docker_wording() {
    let (_t, s) = open_store();
    let e = s.get("busybox").unwrap_err();
    assert_eq!(e.to_string(), "No such image: busybox:latest");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = s.get("Busybox").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("must be lowercase"));
    assert_eq!(s.get("abc123").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        s.get(&format!("sha256:{}", "0".repeat(64)))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn ambiguous_prefix_is_not_found() {
    let (_t, s) = open_store();
    // Find two configs whose ids share a first hex digit.
    let mut by_first: std::collections::HashMap<char, Vec<Vec<u8>>> = Default::default();
    let mut pair = None;
    for i in 0..64 {
        let c = config_for(&[], &format!("c{i}"));
        let first = sha256_digest(&c).chars().nth(7).unwrap();
        let v = by_first.entry(first).or_default();
        v.push(c);
        if v.len() == 2 {
            pair = Some((first, v.clone()));
            break;
        }
    }
    let (first, cfgs) = pair.unwrap();
    for c in &cfgs {
        s.create_image(c, &[]).unwrap();
    }
    assert_eq!(
        s.get(&first.to_string()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let id = sha256_digest(&cfgs[0]);
    assert_eq!(s.get(&id[..20]).unwrap().id, id);
}

#[test]
fn failed_load_leaves_nothing_visible() {
    let (t, s) = open_store();
    let (l1, l2) = base_layers();
    // Config claims l2's diff id for what is really l1.
    let cfg = config_for(&[&l2], "x");
    let ar = legacy_archive(&[(cfg, vec![l1.clone()], vec!["bad:1"])]);
    let e = s.load(&mut &ar[..]).unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(s.list().unwrap().is_empty());
    assert!(s.get("bad:1").is_err());
    assert_eq!(count_dir(&t.path().join("image/tmp")), 0);
    // Second image in an archive fails: the first is not visible either.
    let good = config_for(&[&l1], "g");
    let ar = legacy_archive(&[
        (good, vec![l1.clone()], vec!["good:1"]),
        (config_for(&[&l2], "x"), vec![l1], vec!["bad:1"]),
    ]);
    assert!(s.load(&mut &ar[..]).is_err());
    assert!(s.get("good:1").is_err());
    // The stored but never committed layer of good:1 is collected at the next open.
    assert_eq!(count_dir(&t.path().join("image/layers")), 1);
    drop(s);
    let s = ImageStore::open(&t.path().join("image")).unwrap();
    assert_eq!(count_dir(&t.path().join("image/layers")), 0);
    assert_eq!(count_dir(&t.path().join("image/blobs/sha256")), 0);
    // Garbage.
    assert!(s.load(&mut &b"not a tar"[..]).is_err());
}

#[test]
fn oci_layout_load_with_gzip_layers() {
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "oci");
    let ar = oci_archive(&cfg, &[l1, l2], &["localhost:5000/x:1", "latest"]);
    let lines = s.load(&mut &ar[..]).unwrap();
    assert_eq!(lines, vec!["Loaded image: localhost:5000/x:1".to_string()]);
    assert_eq!(s.get("localhost:5000/x:1").unwrap().id, sha256_digest(&cfg));
    // Only a bare tag: no repository, so untagged.
    let (_t2, s2) = open_store();
    let ar = oci_archive(&cfg, &base_layers_vec(), &["latest"]);
    assert_eq!(
        s2.load(&mut &ar[..]).unwrap(),
        vec![format!("Loaded image ID: {}", sha256_digest(&cfg))]
    );
}

fn base_layers_vec() -> Vec<Vec<u8>> {
    let (a, b) = base_layers();
    vec![a, b]
}

#[test]
fn save_load_round_trip() {
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "rt");
    let ar = legacy_archive(&[(
        cfg.clone(),
        vec![l1.clone(), l2.clone()],
        vec!["app:v1", "app:v2"],
    )]);
    s.load(&mut &ar[..]).unwrap();
    let mut out = Vec::new();
    s.save(&["app".to_string()], &mut out).unwrap();

    // The archive has both Docker and OCI metadata.
    let mut names = Vec::new();
    let mut index = None;
    let mut manifest = None;
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if p == "index.json" {
            index = Some(serde_json::from_slice::<serde_json::Value>(&data).unwrap());
        }
        if p == "manifest.json" {
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&data).unwrap());
        }
        if let Some(hex) = p.strip_prefix("blobs/sha256/") {
            if !hex.is_empty() {
                assert_eq!(sha256_digest(&data)[7..], *hex);
            }
        }
        names.push(p);
    }
    assert!(names.contains(&"oci-layout".to_string()));
    assert!(names.contains(&"repositories".to_string()));
    let index = index.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:v1"
    );
    let manifest = manifest.unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["app:v1", "app:v2"])
    );

    // Into a fresh store (which reads manifest.json), and as plain OCI (index.json only).
    let (_t2, s2) = open_store();
    let lines = s2.load(&mut &out[..]).unwrap();
    assert_eq!(lines, vec!["Loaded image: app:v1", "Loaded image: app:v2"]);
    let a = s.get("app:v1").unwrap();
    let b = s2.get("app:v2").unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(a.config.rootfs.diff_ids, b.config.rootfs.diff_ids);
    let mut out2 = Vec::new();
    s2.save(&["app".to_string()], &mut out2).unwrap();
    assert_eq!(out, out2, "save is deterministic and lossless");

    let oci_only = strip_entries(&out, &["manifest.json", "repositories"]);
    let (_t3, s3) = open_store();
    let lines = s3.load(&mut &oci_only[..]).unwrap();
    assert_eq!(lines, vec!["Loaded image: app:v1", "Loaded image: app:v2"]);
    assert_eq!(s3.get("app:v1").unwrap().id, a.id);

    // By id: untagged.
    let mut out3 = Vec::new();
    s.save(&[a.id[7..19].to_string()], &mut out3).unwrap();
    let (_t4, s4) = open_store();
    assert_eq!(
        s4.load(&mut &out3[..]).unwrap(),
        vec![format!("Loaded image ID: {}", a.id)]
    );
}

fn strip_entries(ar: &[u8], drop: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in tar::Archive::new(ar).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if drop.contains(&p.as_str()) {
            continue;
        }
        let mut h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        b.append_data(&mut h, &p, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn tag_and_remove_follow_docker_rules() {
    let (t, s) = open_store();
    let (l1, _) = base_layers();
    let cfg = config_for(&[&l1], "r");
    let id = sha256_digest(&cfg);
    let short = &id[7..19];
    s.load(&mut &legacy_archive(&[(cfg, vec![l1], vec!["busybox:latest"])])[..])
        .unwrap();
    s.tag("busybox", "other/name:2").unwrap();
    assert!(s.tag("busybox", "Bad").is_err());
    assert!(s
        .tag("nope", "x")
        .unwrap_err()
        .to_string()
        .contains("No such image: nope:latest"));
    assert_eq!(s.get("other/name:2").unwrap().id, id);

    // Several tags: removing one only untags, even if a container uses it.
    let stopped = |_: &str| Some(("0123456789abcdef".to_string(), false));
    let running = |_: &str| Some(("0123456789abcdef".to_string(), true));
    let r = s.remove("other/name:2", false, false, &stopped).unwrap();
    assert_eq!(r, vec![DeleteItem::Untagged("other/name:2".into())]);

    // Last tag, stopped container: refused without force.
    let e = s.remove("busybox", false, false, &stopped).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to remove repository reference \"busybox\" (must force) - container 0123456789ab is using its referenced image {short}")
    );
    // By id.
    let e = s.remove(short, false, false, &stopped).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to delete {short} (must be forced) - image is being used by stopped container 0123456789ab")
    );
    let e = s.remove(short, true, false, &running).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("conflict: unable to delete {short} (cannot be forced) - image is being used by running container 0123456789ab")
    );
    // Referenced in several repositories: by id needs force.
    s.tag("busybox", "a/b").unwrap();
    let e = s.remove(short, false, false, &never).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("image is referenced in one or more repositories"),
        "{e}"
    );
    s.remove("a/b", false, false, &never).unwrap();
    // Force by name with a running container only untags (Docker keeps the image).
    s.tag("busybox", "keep:1").unwrap();
    let r = s.remove("keep:1", true, false, &running).unwrap();
    assert_eq!(r, vec![DeleteItem::Untagged("keep:1".into())]);
    assert!(s.get(&id).is_ok());
    // Force with a stopped container deletes.
    let r = s.remove("busybox", true, false, &stopped).unwrap();
    assert_eq!(r[0], DeleteItem::Untagged("busybox:latest".into()));
    assert_eq!(r[1], DeleteItem::Deleted(id.clone()));
    assert_eq!(r.len(), 3, "image and its one layer: {r:?}");
    assert!(s.get(&id).is_err());
    assert_eq!(count_dir(&t.path().join("image/layers")), 0);
    assert_eq!(count_dir(&t.path().join("image/blobs/sha256")), 0);
    assert_eq!(
        s.remove("busybox", false, false, &never)
            .unwrap_err()
            .to_string(),
        "No such image: busybox:latest"
    );
}

#[test]
fn history_newest_first() {
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "h");
    s.load(&mut &legacy_archive(&[(cfg.clone(), vec![l1, l2], vec!["h:1"])])[..])
        .unwrap();
    let h = s.history("h:1").unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].id, sha256_digest(&cfg));
    assert_eq!(h[0].tags, vec!["h:1"]);
    assert_eq!(h[0].created_by, "CMD");
    assert_eq!(h[0].size, 0);
    assert_eq!(h[1].id, "<missing>");
    assert_eq!(h[1].created_by, "step 1");
    assert_eq!(h[1].size, 3);
    assert_eq!(h[2].size, 6 + 3 + 1 + 4);
    assert_eq!(h[2].created, 1_714_557_600);
    let j = serde_json::to_value(&h[0]).unwrap();
    assert!(j.get("CreatedBy").is_some() && j.get("Id").is_some());
}

#[test]
fn import_rootfs_with_changes() {
    let (_t, s) = open_store();
    let (l1, _) = base_layers();
    let changes = vec![
        "CMD [\"/bin/sh\"]".to_string(),
        "ENV A=b".into(),
        "EXPOSE 80".into(),
    ];
    let id = s
        .import(&mut &gzip(&l1)[..], Some("imp:1"), &changes, None)
        .unwrap();
    let img = s.get("imp:1").unwrap();
    assert_eq!(img.id, id);
    let c = &img.config;
    assert_eq!(c.os, "linux");
    assert_eq!(c.architecture, crate::config::host_architecture());
    assert_eq!(c.rootfs.diff_ids, vec![sha256_digest(&l1)]);
    assert_eq!(c.history[0].comment.as_deref(), Some("Imported from -"));
    let cc = c.config.as_ref().unwrap();
    assert_eq!(cc.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(cc.env.as_deref(), Some(&["A=b".to_string()][..]));
    assert!(cc.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
    assert!(img.created.is_some());
    // Plain tar, no tag, message.
    let id2 = s.import(&mut &l1[..], None, &[], Some("msg")).unwrap();
    assert_eq!(
        s.get(&id2).unwrap().config.history[0].comment.as_deref(),
        Some("msg")
    );
    assert!(s
        .import(&mut &l1[..], None, &["RUN x".to_string()], None)
        .is_err());
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn snapshot_overlay_semantics() {
    if !is_root() {
        return;
    }
    let (t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "snap");
    s.load(&mut &legacy_archive(&[(cfg.clone(), vec![l1, l2], vec!["snap:1"])])[..])
        .unwrap();
    let id = sha256_digest(&cfg);
    s.create_snapshot("c1", "snap:1").unwrap();
    s.create_snapshot("c1", &id).unwrap(); // idempotent
    let m = s.mount_snapshot("c1").unwrap();
    assert_eq!(s.mount_snapshot("c1").unwrap(), m); // idempotent
    assert!(
        !m.join("etc/motd").exists(),
        "whiteout hides the lower file"
    );
    assert!(m.join("etc").is_dir());
    assert!(
        !m.join("var/lib").exists(),
        "opaque dir hides lower content"
    );
    assert_eq!(fs::read(m.join("var/new")).unwrap(), b"new");
    assert_eq!(fs::read(m.join("keep")).unwrap(), b"k");
    assert_eq!(
        fs::read_link(m.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    fs::write(m.join("written"), b"12345").unwrap();
    let upper = t.path().join("image/snapshots/c1/upper");
    assert_eq!(fs::read(upper.join("written")).unwrap(), b"12345");
    assert_eq!(s.snapshot_size("c1").unwrap(), 5);
    // Deleting a lower file leaves a whiteout in upper, lower untouched.
    fs::remove_file(m.join("keep")).unwrap();
    assert!(fs::symlink_metadata(upper.join("keep")).unwrap().rdev() == 0);
    // Image removal while the snapshot exists keeps its layers.
    s.remove("snap:1", true, false, &|_| Some(("c1".into(), false)))
        .unwrap();
    assert_eq!(fs::read(m.join("var/new")).unwrap(), b"new");
    s.unmount_snapshot("c1").unwrap();
    s.unmount_snapshot("c1").unwrap();
    assert!(!m.join("var/new").exists());
    // Remount works, data persists.
    let m = s.mount_snapshot("c1").unwrap();
    assert_eq!(fs::read(m.join("written")).unwrap(), b"12345");
    s.remove_snapshot("c1").unwrap(); // unmounts
    assert!(!t.path().join("image/snapshots/c1").exists());
    assert_eq!(
        count_dir(&t.path().join("image/layers")),
        0,
        "last user gone: layers collected"
    );
    s.remove_snapshot("c1").unwrap();
    assert!(s.create_snapshot("../x", "snap:1").is_err());
}

#[test]
fn snapshot_zero_and_many_layers() {
    if !is_root() {
        return;
    }
    let (_t, s) = open_store();
    // Zero layers.
    let id = s.create_image(&config_for(&[], "none"), &[]).unwrap();
    s.create_snapshot("z", &id).unwrap();
    let m = s.mount_snapshot("z").unwrap();
    fs::write(m.join("f"), b"x").unwrap();
    s.remove_snapshot("z").unwrap();
    // 200 layers: far beyond what absolute paths would fit in one page.
    let layers: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let name = format!("f{i}");
            layer(&[E::F(&name, name.as_bytes())])
        })
        .collect();
    let refs: Vec<&[u8]> = layers.iter().map(|l| &l[..]).collect();
    let cfg = config_for(&refs, "many");
    s.load(&mut &legacy_archive(&[(cfg.clone(), layers.clone(), vec!["many:1"])])[..])
        .unwrap();
    s.create_snapshot("many", "many:1").unwrap();
    let m = s.mount_snapshot("many").unwrap();
    for i in [0, 99, 199] {
        assert_eq!(
            fs::read(m.join(format!("f{i}"))).unwrap(),
            format!("f{i}").as_bytes()
        );
    }
    s.remove_snapshot("many").unwrap();
    assert!(std::env::current_dir().is_ok());
}

#[test]
fn commit_and_diff_snapshot() {
    if !is_root() {
        return;
    }
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "base");
    s.load(&mut &legacy_archive(&[(cfg, vec![l1, l2], vec!["base:1"])])[..])
        .unwrap();
    s.create_snapshot("c", "base:1").unwrap();
    let m = s.mount_snapshot("c").unwrap();
    fs::write(m.join("keep"), b"changed").unwrap();
    fs::create_dir(m.join("newdir")).unwrap();
    fs::write(m.join("newdir/f"), b"f").unwrap();
    fs::hard_link(m.join("newdir/f"), m.join("newdir/g")).unwrap();
    fs::remove_file(m.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/x", m.join("link")).unwrap();
    let ch = s.snapshot_changes("c").unwrap();
    let has = |p: &str, k: u8| ch.iter().any(|c| c.path == p && c.kind == k);
    assert!(has("/keep", 0), "{ch:?}");
    assert!(has("/newdir", 1) && has("/newdir/f", 1));
    assert!(has("/bin", 0) && has("/bin/sh", 2));
    assert!(has("/link", 1));

    let opts = CommitOptions {
        reference: Some("committed:1".into()),
        changes: vec!["CMD [\"new\"]".into()],
        comment: Some("c".into()),
        ..Default::default()
    };
    let id = s.commit_snapshot("c", &opts).unwrap();
    let img = s.get("committed:1").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.config.rootfs.diff_ids.len(), 3);
    assert_eq!(
        img.config.config.as_ref().unwrap().cmd.as_deref(),
        Some(&["new".to_string()][..])
    );
    assert_eq!(
        img.config.config.as_ref().unwrap().env.as_deref(),
        Some(&["PATH=/bin".to_string()][..])
    );
    assert_eq!(img.config.history.len(), 4);
    s.remove_snapshot("c").unwrap();

    s.create_snapshot("d", "committed:1").unwrap();
    let m = s.mount_snapshot("d").unwrap();
    assert_eq!(fs::read(m.join("keep")).unwrap(), b"changed");
    assert_eq!(fs::read(m.join("newdir/g")).unwrap(), b"f");
    assert!(fs::symlink_metadata(m.join("bin/sh")).is_err());
    assert!(m.join("bin/busybox").exists());
    assert!(!m.join("etc/motd").exists());
    assert_eq!(fs::read_link(m.join("link")).unwrap(), Path::new("/x"));
    // The init layer on top of the image's three: the mount points, never in a diff.
    let paths = s.snapshot_paths("d").unwrap();
    assert_eq!(paths.lower_dirs.len(), 4);
    assert!(paths.lower_dirs[0].ends_with("d/init"));
    for p in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        ".dockerenv",
        "proc",
        "dev/shm",
    ] {
        assert!(fs::symlink_metadata(m.join(p)).is_ok(), "{p}");
    }
    assert_eq!(
        fs::read_link(m.join("etc/mtab")).unwrap(),
        Path::new("/proc/mounts")
    );
    assert!(s.snapshot_changes("d").unwrap().is_empty());
    s.remove_snapshot("d").unwrap();
    // A build's view of an image has the image's tree only.
    s.create_image_snapshot("v", "committed:1").unwrap();
    let m = s.mount_snapshot("v").unwrap();
    assert_eq!(s.snapshot_paths("v").unwrap().lower_dirs.len(), 3);
    assert!(m.join("keep").exists());
    for p in [".dockerenv", "etc/hosts", "etc/mtab", "dev/shm"] {
        assert!(fs::symlink_metadata(m.join(p)).is_err(), "{p}");
    }
    s.remove_snapshot("v").unwrap();
    // The saved archive of a committed image loads elsewhere with the same id.
    let mut out = Vec::new();
    s.save(&["committed:1".to_string()], &mut out).unwrap();
    let (_t2, s2) = open_store();
    s2.load(&mut &out[..]).unwrap();
    assert_eq!(s2.get("committed:1").unwrap().id, id);
}

#[test]
fn load_archive_cannot_read_outside_staging() {
    let (t, s) = open_store();
    let secret = t.path().join("secret.json");
    fs::write(&secret, br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
    for cfg_path in [
        "../../secret.json".to_string(),
        secret.display().to_string(),
        "link/secret.json".to_string(),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "../../..").unwrap();
        let m = serde_json::to_vec(
            &serde_json::json!([{"Config": cfg_path, "RepoTags": ["x:1"], "Layers": []}]),
        )
        .unwrap();
        add(&mut b, "manifest.json", &m);
        let ar = b.into_inner().unwrap();
        assert!(s.load(&mut &ar[..]).is_err(), "{cfg_path}");
    }
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn oci_blob_digest_is_verified() {
    let (_t, s) = open_store();
    let (l1, _) = base_layers();
    let cfg = config_for(&[&l1], "o");
    let ar = oci_archive(&cfg, &[l1], &["docker.io/library/o:1"]);
    // Corrupt one byte inside the gzip layer blob (the largest blob entry).
    let mut out = tar::Builder::new(Vec::new());
    for e in tar::Archive::new(&ar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if p.starts_with("blobs/") && data.starts_with(&[0x1f, 0x8b]) {
            let n = data.len();
            data[n - 5] ^= 0xff;
        }
        let mut h = e.header().clone();
        out.append_data(&mut h, &p, &data[..]).unwrap();
    }
    let bad = out.into_inner().unwrap();
    assert!(matches!(
        s.load(&mut &bad[..]),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn concurrent_loads_and_lookups() {
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "conc");
    let ar = legacy_archive(&[(cfg.clone(), vec![l1, l2], vec!["conc:1"])]);
    let s = std::sync::Arc::new(s);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            let ar = ar.clone();
            std::thread::spawn(move || {
                s.load(&mut &ar[..]).unwrap();
                s.tag("conc:1", &format!("conc:t{i}")).unwrap();
                let _ = s.list().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let img = s.get("conc:1").unwrap();
    assert_eq!(img.id, sha256_digest(&cfg));
    assert_eq!(img.repo_tags.len(), 5);
    assert_eq!(s.list().unwrap().len(), 1);
}

/// Robustness against real-world tar variants: Python's test archive has GNU/pax long names,
/// sparse files, devices, hard and soft links. Extraction must not panic; whatever it extracts
/// stays inside the target.
#[test]
fn extracts_python_testtar_without_escaping() {
    let Some(p) = ["3.13.0", "3.12.1", "3.11.7"]
        .iter()
        .map(|v| {
            format!(
                "/root/.pyenv/versions/{v}/lib/python{}/test/archivetestdata/testtar.tar",
                &v[..v.rfind('.').unwrap_or(v.len())]
            )
        })
        .chain(std::iter::once(
            "/usr/lib/python3.11/test/testtar.tar".to_string(),
        ))
        .find(|p| Path::new(p).exists())
    else {
        return;
    };
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("d");
    fs::create_dir(&dest).unwrap();
    let data = fs::read(&p).unwrap();
    let r = crate::extract::extract_layer(&mut &data[..], &dest);
    eprintln!("python testtar: {r:?}: {} entries", walk_count(&dest));
    assert_eq!(count_dir(t.path()), 1);
}

/// End to end with a real binary: import a busybox rootfs, mount it, run a command in it.
#[test]
fn import_busybox_and_run_in_snapshot() {
    let bb = Path::new("/usr/bin/busybox");
    if !is_root() || !bb.exists() {
        return;
    }
    let bin = fs::read(bb).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "bin/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bin.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bin[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let rootfs = b.into_inner().unwrap();
    let (_t, s) = open_store();
    s.import(
        &mut &gzip(&rootfs)[..],
        Some("bb"),
        &["CMD [\"sh\"]".into()],
        None,
    )
    .unwrap();
    s.create_snapshot("run", "bb").unwrap();
    let m = s.mount_snapshot("run").unwrap();
    let out = std::process::Command::new("chroot")
        .arg(&m)
        .args(["/bin/sh", "-c", "echo hi > /out; /bin/busybox cat /out"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{out:?}");
    assert_eq!(s.snapshot_size("run").unwrap(), 3);
    s.remove_snapshot("run").unwrap();
}

fn walk_count(p: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            n += 1;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n += walk_count(&e.path());
            }
        }
    }
    n
}

#[test]
fn layer_tar_and_has_layer_after_a_gzip_load() {
    use std::io::Read;
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg = config_for(&[&l1, &l2], "tars");
    let ar = oci_archive(&cfg, &[l1.clone(), l2.clone()], &["localhost:5000/t:1"]);
    s.load(&mut &ar[..]).unwrap();
    let layers = s.image_layers("localhost:5000/t:1").unwrap();
    assert_eq!(layers.len(), 2);
    for (info, plain) in layers.iter().zip([&l1, &l2]) {
        assert!(s.has_layer(&info.chain_id));
        let mut got = Vec::new();
        s.open_layer_tar(&info.diff_id)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(&got, plain, "the stored tar is the uncompressed layer");
        assert_eq!(sha256_digest(&got), info.diff_id);
    }
    assert!(!s.has_layer(&sha256_digest(b"no such layer")));
    assert!(s.open_layer_tar(&sha256_digest(b"no such blob")).is_err());
}

#[test]
fn a_streamed_layer_is_kept_only_with_the_expected_digest() {
    use std::io::Read;
    let (t, s) = open_store();
    let (l1, l2) = base_layers();
    let d1 = sha256_digest(&l1);
    // Gzipped with trailing padding after the tar's end: the digest covers the whole stream.
    let mut padded = l1.clone();
    padded.extend_from_slice(&[0u8; 4096]);
    let dp = sha256_digest(&padded);
    let info = s
        .add_layer_streaming(None, &dp, &mut &gzip(&padded)[..])
        .unwrap();
    assert_eq!(info.diff_id, dp);
    assert!(s.has_layer(&dp));
    let mut got = Vec::new();
    s.open_layer_tar(&dp)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, padded);

    // A stream that is not what the config says: no layer, no blob, no temp left.
    let layers_dir = t.path().join("image/layers");
    let blobs_dir = t.path().join("image/blobs/sha256");
    let (nl, nb) = (count_dir(&layers_dir), count_dir(&blobs_dir));
    let e = s
        .add_layer_streaming(Some(&dp), &d1, &mut &l2[..])
        .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert_eq!(count_dir(&layers_dir), nl);
    assert_eq!(count_dir(&blobs_dir), nb);
    assert!(!s.has_layer(&chain_ids(&[dp.clone(), d1.clone()])[1]));
    // A broken tar is an error too, and leaves nothing.
    let e = s.add_layer_streaming(None, &d1, &mut &b"not a tar at all"[..]);
    assert!(e.is_err());
    assert_eq!(count_dir(&layers_dir), nl);
    assert_eq!(count_dir(&blobs_dir), nb);
}

#[test]
fn a_layer_added_for_an_unrecorded_image_survives_rmi_of_another_image_sharing_it() {
    let (_t, s) = open_store();
    let (l1, l2) = base_layers();
    let cfg_a = config_for(&[&l1], "a");
    let ar = oci_archive(&cfg_a, std::slice::from_ref(&l1), &["localhost:5000/a:1"]);
    s.load(&mut &ar[..]).unwrap();
    // A pull of B: its first layer is A's (found present), its second is new.
    let d1 = sha256_digest(&l1);
    let d2 = sha256_digest(&l2);
    let i1 = s.add_layer_streaming(None, &d1, &mut &l1[..]).unwrap();
    s.add_layer_streaming(Some(&i1.chain_id), &d2, &mut &l2[..])
        .unwrap();
    // Meanwhile A is removed: the shared layer must not go with it.
    s.remove("localhost:5000/a:1", false, false, &never)
        .unwrap();
    assert!(s.has_layer(&i1.chain_id), "a pinned layer was deleted");
    let cfg_b = config_for(&[&l1, &l2], "b");
    let b: Reference = Reference::parse("localhost:5000/b:1").unwrap();
    s.create_image(&cfg_b, &[b]).unwrap();
    // Once B is recorded the pin is gone: removing B deletes both layers.
    s.remove("localhost:5000/b:1", false, false, &never)
        .unwrap();
    assert!(!s.has_layer(&i1.chain_id));
}

#[test]
fn the_tag_index_is_rewritten_only_when_a_reference_moves() {
    use std::os::unix::fs::MetadataExt;
    let (t, s) = open_store();
    let index = t.path().join("image").join("repositories.json");
    let tag: Reference = Reference::parse("x:1").unwrap();
    let a = s
        .create_image(&config_for(&[], "a"), std::slice::from_ref(&tag))
        .unwrap();
    let ino = || std::fs::metadata(&index).unwrap().ino();
    let first = ino();
    // An untagged image (a build step's) leaves the index as it is: no rewrite, no fsync.
    s.create_image(&config_for(&[], "step"), &[]).unwrap();
    assert_eq!(ino(), first, "an untagged image rewrote the index");
    // The same tag on the same image: nothing moved.
    s.create_image(&config_for(&[], "a"), std::slice::from_ref(&tag))
        .unwrap();
    assert_eq!(ino(), first, "an unchanged tag rewrote the index");
    // The tag moving to another image is written, and read back by a new store.
    let b = s.create_image(&config_for(&[], "b"), &[tag]).unwrap();
    assert_ne!(ino(), first);
    assert_ne!(a, b);
    let again = ImageStore::open(&t.path().join("image")).unwrap();
    assert_eq!(again.resolve_id("x:1").unwrap(), b);
}
