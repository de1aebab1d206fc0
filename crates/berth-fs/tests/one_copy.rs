//! The workspace has one resolver, one extractor and one atomic writer: this crate's. A new copy
//! elsewhere (a hand-written `RESOLVE_IN_ROOT`, a tar `unpack`, a temp-file-fsync-rename) fails
//! here, unless it is listed below with the reason it is not one.

use std::path::{Path, PathBuf};

/// (file, what it may contain, why).
const ALLOWED: &[(&str, &str, &str)] = &[
    // Content-addressed commits: a blob or an upload streamed to a temp file and renamed to its
    // digest; not a rewrite of a file in place.
    (
        "berth-image/src/blobs.rs",
        "atomic",
        "blob commit by digest",
    ),
    (
        "berth-registry/src/storage.rs",
        "atomic",
        "upload commit by digest",
    ),
    // `docker save -o`: streamed from the daemon into a temp file, renamed when complete.
    ("berth-cli/src/cmd_image.rs", "atomic", "streamed download"),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("target" | "tests")
            ) {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// What kind of copy a file's text looks like, if any.
fn copies(text: &str) -> Vec<&'static str> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let resolver = [
        "RESOLVE_IN_ROOT",
        "SYS_openat2",
        "fn resolve_in_root",
        "fn secure_join",
        "fn open_in_root",
    ];
    if resolver.iter().any(|p| code.contains(p)) {
        out.push("resolver");
    }
    let extractor = [
        ".unpack(",
        "unpack_in(",
        "libc::symlinkat",
        "libc::mknodat",
        "libc::linkat",
    ];
    if extractor.iter().any(|p| code.contains(p)) {
        out.push("extractor");
    }
    if code.contains("rename(") && code.contains("sync_all()") {
        out.push("atomic");
    }
    out
}

#[test]
fn no_stray_copies_in_the_workspace() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for c in std::fs::read_dir(crates).unwrap().flatten() {
        let name = c.file_name().to_string_lossy().into_owned();
        if name == "berth-fs" || name == "berth-testkit" {
            continue;
        }
        sources(&c.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found the workspace's sources");
    let mut stray = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(crates)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        for kind in copies(&text) {
            if !ALLOWED.iter().any(|(p, k, _)| *p == rel && *k == kind) {
                stray.push(format!("{rel}: a {kind} of its own (use berth-fs)"));
            }
        }
    }
    assert!(stray.is_empty(), "{stray:#?}");
}

#[test]
fn the_detector_sees_copies() {
    assert_eq!(copies("let x = libc::RESOLVE_IN_ROOT;"), ["resolver"]);
    assert_eq!(copies("entry.unpack(&t)?;"), ["extractor"]);
    assert_eq!(copies("f.sync_all()?;\nfs::rename(&t, p)?;"), ["atomic"]);
    assert!(copies("// RESOLVE_IN_ROOT in a comment").is_empty());
}
