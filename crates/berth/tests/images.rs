//! The local image store through the CLI and the API: load (both `docker save` layouts), save,
//! import, images, image inspect, history, tag, rmi, layers with whiteouts, and hostile tarballs.

mod common;
use common::*;
use std::path::Path;

fn busybox() -> Image {
    image::busybox_image().expect("busybox image (apt-get install busybox-static)")
}

fn id_of(d: &Daemon, reference: &str) -> String {
    fmt(d, reference, "{{.Id}}")
}

// ---------------------------------------------------------------- load

#[test]
fn load_docker25_oci_layout() {
    let d = d();
    let tag = format!("{}:v1", unique("oci"));
    let img = busybox().retag(&[&tag]);
    let o = d.load_image(&img, SaveFormat::Oci);
    o.ok();
    assert!(o.stdout.contains(&format!("Loaded image: {tag}")), "{o}");
    assert_eq!(id_of(d, &tag), img.id());
    assert_eq!(sh_in(d, &tag, "echo ok"), "ok");
}

#[test]
fn load_legacy_layout() {
    let d = d();
    let tag = format!("{}:v1", unique("legacy"));
    let img = busybox().retag(&[&tag]);
    let o = d.load_image(&img, SaveFormat::Legacy);
    o.ok();
    assert!(o.stdout.contains(&format!("Loaded image: {tag}")), "{o}");
    assert_eq!(id_of(d, &tag), img.id());
    assert_eq!(sh_in(d, &tag, "echo ok"), "ok");
}

#[test]
fn load_from_stdin_and_several_images() {
    let d = d();
    let (t1, t2) = (
        format!("{}:a", unique("multi")),
        format!("{}:b", unique("multi")),
    );
    let a = busybox().retag(&[&t1]);
    let b = image::layered_image().expect("layered").retag(&[&t2]);
    let tar = image::save_tar(&[&a, &b], SaveFormat::Oci);
    let o = d.cli_in(&["load"], &tar);
    o.ok();
    assert!(o.stdout.contains(&t1) && o.stdout.contains(&t2), "{o}");
    assert_eq!(id_of(d, &t1), a.id());
    assert_eq!(id_of(d, &t2), b.id());
    let q = d.cli_in(
        &["load", "-q"],
        &busybox()
            .retag(&[&format!("{}:q", unique("quiet"))])
            .save_tar(SaveFormat::Legacy),
    );
    q.ok();
}

#[test]
fn load_through_the_api() {
    let d = d();
    let tag = format!("{}:api", unique("apiload"));
    let img = busybox().retag(&[&tag]);
    let r = d
        .api_with(
            "POST",
            "/v1.45/images/load?quiet=1",
            &[("Content-Type", "application/x-tar")],
            Some(&img.save_tar(SaveFormat::Oci)),
        )
        .expect("POST /images/load");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Loaded image"), "{}", r.text());
    assert_eq!(id_of(d, &tag), img.id());
}

#[test]
fn load_rejects_garbage() {
    let d = d();
    let o = d.cli_in(
        &["load"],
        b"this is not a tar archive at all, just words words words",
    );
    o.fails();
    // Docker answers 200 and puts the error in the JSON stream (docker-py's ImageLoadError).
    let r = d
        .api_with("POST", "/images/load", &[], Some(b"garbage"))
        .expect("POST /images/load");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value =
        serde_json::from_str(r.text().lines().last().unwrap_or("")).expect("a JSON line");
    assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(v["errorDetail"]["message"], v["error"], "{v}");
    assert!(d.ping(), "daemon died on a garbage load");
}

/// A truncated compressed archive is the client's fault: import answers 400, load its error
/// line (dockerd's shape, docker-py's ImageLoadError), both saying what is wrong with the
/// archive and naming none of the daemon's paths.
#[test]
fn truncated_compressed_archives_are_refused_clearly() {
    let d = d();
    let mut layer = RawTar::new();
    layer.file("hello.txt", 0o644, &vec![b'x'; 64 * 1024]);
    let mut gz = std::process::Command::new("gzip");
    gz.arg("-c");
    let packed = berth_testkit::run_with_timeout(gz, Some(layer.finish()), DEADLINE);
    assert!(packed.success(), "{packed}");
    let cut = &packed.stdout_bytes[..packed.stdout_bytes.len() / 2];
    let r = d
        .api_with(
            "POST",
            "/images/create?fromSrc=-&repo=truncated-import",
            &[("Content-Type", "application/x-tar")],
            Some(cut),
        )
        .expect("import");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("truncated or corrupt gzip data"),
        "{}",
        r.text()
    );
    let root = d.root().display().to_string();
    assert!(!r.text().contains(&root), "{}", r.text());

    let save = busybox()
        .retag(&["truncated-load:x"])
        .save_tar(SaveFormat::Oci);
    let mut gz = std::process::Command::new("gzip");
    gz.arg("-c");
    let packed = berth_testkit::run_with_timeout(gz, Some(save), DEADLINE);
    let cut = &packed.stdout_bytes[..packed.stdout_bytes.len() / 2];
    let r = d
        .api_with("POST", "/images/load", &[], Some(cut))
        .expect("load");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"errorDetail\""), "{}", r.text());
    assert!(
        r.text().contains("truncated or corrupt gzip data"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains(&root), "{}", r.text());
    assert!(!d.cli(&["image", "inspect", "truncated-load:x"]).success());
}

// ---------------------------------------------------------------- save

#[test]
fn save_load_round_trip_keeps_ids() {
    let d = d();
    let tag = format!("{}:v1", unique("roundtrip"));
    d.cli(&["tag", "busybox", &tag]).ok();
    let want = id_of(d, "busybox");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.tar");
    d.cli(&["save", "-o", &file.to_string_lossy(), &tag]).ok();
    let tar = std::fs::read(&file).expect("saved tar");
    check_docker_save(&tar, &tag, &want);

    let rmi = d.cli(&["rmi", &tag]);
    rmi.ok();
    assert!(rmi.stdout.contains(&format!("Untagged: {tag}")), "{rmi}");
    assert!(!d.cli(&["image", "inspect", &tag]).success());
    let o = d.cli(&["load", "-i", &file.to_string_lossy()]);
    o.ok();
    assert!(o.stdout.contains(&format!("Loaded image: {tag}")), "{o}");
    assert_eq!(id_of(d, &tag), want);
    assert_eq!(sh_in(d, &tag, "echo back"), "back");

    // save to stdout
    let s = d.cli(&["save", &tag]);
    s.ok();
    check_docker_save(&s.stdout_bytes, &tag, &want);
}

#[test]
fn save_of_a_layered_image_carries_every_layer() {
    let d = d();
    let want = d.load_layered();
    let s = d.cli(&["save", "layered:latest"]);
    s.ok();
    let m = check_docker_save(&s.stdout_bytes, "layered:latest", &want);
    assert_eq!(m["Layers"].as_array().map(|a| a.len()), Some(3), "{m}");
}

/// Checks a `docker save` tarball as Docker ≥ 25 writes it; returns its manifest.json entry.
fn check_docker_save(tar: &[u8], tag: &str, id: &str) -> Value {
    let names = image::tar_entry_names(tar).expect("save output is a tar");
    for n in ["manifest.json", "index.json", "oci-layout"] {
        assert!(names.iter().any(|x| x == n), "save lacks {n}: {names:?}");
    }
    let m: Value = serde_json::from_slice(
        &image::tar_read_file(tar, "manifest.json")
            .expect("read")
            .expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    let entry = m
        .as_array()
        .and_then(|a| {
            a.iter().find(|e| {
                e["RepoTags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!(tag)))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("manifest.json has no {tag}: {m}"));
    let cfg_path = entry["Config"].as_str().expect("Config path");
    let cfg = image::tar_read_file(tar, cfg_path)
        .expect("read")
        .expect("config blob");
    assert_eq!(
        image::sha256_digest(&cfg),
        id,
        "config digest is the image id"
    );
    let cfg: Value = serde_json::from_slice(&cfg).expect("config JSON");
    let diff_ids = cfg["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let layers = entry["Layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(diff_ids.len(), layers.len(), "{entry}");
    for (l, want) in layers.iter().zip(&diff_ids) {
        let blob = image::tar_read_file(tar, l.as_str().unwrap_or(""))
            .expect("read")
            .expect("layer blob");
        assert_eq!(
            json!(image::sha256_digest(&blob)),
            *want,
            "layer {l} is the uncompressed diff"
        );
    }
    entry
}

fn sh_in(d: &Daemon, image: &str, script: &str) -> String {
    let o = d.cli(&["run", "--rm", image, "sh", "-c", script]);
    o.ok();
    o.out().to_string()
}

// ---------------------------------------------------------------- import

#[test]
fn import_rootfs_with_changes() {
    let d = d();
    let rootfs = image::busybox_layer().expect("busybox layer").to_tar();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rootfs.tar");
    std::fs::write(&file, &rootfs).expect("write rootfs");
    let tag = format!("{}:v1", unique("imported"));
    let o = d.cli(&[
        "import",
        "-c",
        "CMD [\"echo\", \"imported\"]",
        "-c",
        "ENV FOO=bar",
        &file.to_string_lossy(),
        &tag,
    ]);
    o.ok();
    assert!(
        o.out().starts_with("sha256:") && is_hex(&o.out()[7..], 64),
        "import prints the id: {o}"
    );
    assert_eq!(id_of(d, &tag), o.out());
    let run = d.cli(&["run", "--rm", &tag]);
    run.ok();
    assert_eq!(run.out(), "imported");
    assert_eq!(sh_in(d, &tag, "echo $FOO"), "bar");
    // From stdin.
    let tag2 = format!("{}:stdin", unique("imported"));
    d.cli_in(&["import", "-", &tag2], &rootfs).ok();
    assert_eq!(sh_in(d, &tag2, "echo from-stdin"), "from-stdin");
}

// ---------------------------------------------------------------- images, inspect, history

#[test]
fn images_listing_flags() {
    let d = d();
    let id = d.load_busybox();
    let short = &id[7..19];
    let t = d.cli(&["images"]);
    t.ok();
    let head = t.lines()[0].to_string();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(head.contains(col), "header lacks {col}: {t}");
    }
    assert!(
        t.lines()
            .iter()
            .any(|l| l.starts_with("busybox") && l.contains("latest") && l.contains(short)),
        "{t}"
    );
    let q = d.cli(&["images", "-q"]);
    assert!(q.lines().contains(&short), "{q}");
    assert!(q.lines().iter().all(|l| is_hex(l, 12)), "{q}");
    let nq = d.cli(&["images", "-q", "--no-trunc"]);
    assert!(nq.lines().contains(&id.as_str()), "{nq}");
    let a = d.cli(&["images", "-a"]);
    a.ok();
    assert!(a.stdout.contains(short), "{a}");
    let dg = d.cli(&["images", "--digests"]);
    dg.ok();
    assert!(dg.lines()[0].contains("DIGEST"), "{dg}");
    let only = d.cli(&["images", "busybox"]);
    assert!(
        only.lines()
            .iter()
            .skip(1)
            .all(|l| l.starts_with("busybox ")),
        "{only}"
    );
    let f = d.cli(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        f.lines()
            .contains(&format!("busybox:latest {short}").as_str()),
        "{f}"
    );
}

#[test]
fn image_inspect_fields_and_references() {
    let d = d();
    let img = busybox();
    let id = d.load_busybox();
    assert_eq!(id, img.id());
    let o = d.cli(&["image", "inspect", "busybox"]);
    let v = o.json();
    let i = &v[0];
    assert_eq!(i["Id"], json!(id), "{o}");
    assert!(
        i["RepoTags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("busybox:latest"))),
        "{o}"
    );
    assert_eq!(i["Config"]["Cmd"], json!(["sh"]), "{o}");
    assert_eq!(i["Config"]["Env"], json!([image::DEFAULT_PATH]), "{o}");
    assert_eq!(i["RootFS"]["Layers"], json!(img.diff_ids()), "{o}");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["Architecture"], "amd64");
    assert!(i["Size"].as_u64().unwrap_or(0) > 1_000_000, "{o}");
    for r in [
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "library/busybox",
        &id,
        &id[7..19],
    ] {
        assert_eq!(fmt(d, r, "{{.Id}}"), id, "reference {r}");
    }
    let miss = d.cli(&["image", "inspect", "nosuch-image-xyz"]);
    miss.code_is(1);
    assert!(miss.stderr.contains("No such image"), "{miss}");
}

#[test]
fn history_lists_layers_newest_first() {
    let d = d();
    d.load_layered();
    let h = d.cli(&["history", "layered"]);
    h.ok();
    for col in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(h.lines()[0].contains(col), "header lacks {col}: {h}");
    }
    let by = d.cli(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "layered",
    ]);
    by.ok();
    assert_eq!(
        by.lines(),
        vec![
            "/bin/sh -c rm /opt/old.txt && echo layer two",
            "/bin/sh -c echo layer one",
            "/bin/sh -c #(nop) ADD busybox-static rootfs"
        ],
        "{by}"
    );
}

// ---------------------------------------------------------------- tag, rmi

#[test]
fn tag_and_untag() {
    let d = d();
    let id = d.load_busybox();
    let (t1, t2) = (
        format!("{}:one", unique("tag")),
        format!("localhost:5000/ns/{}:2", unique("tag")),
    );
    d.cli(&["tag", "busybox", &t1]).ok();
    d.cli(&["image", "tag", &id[7..19], &t2]).ok();
    assert_eq!(id_of(d, &t1), id);
    assert_eq!(id_of(d, &t2), id);
    let repo = t2.rsplit_once(':').map(|(r, _)| r).unwrap_or("");
    let l = d.cli(&["images", "--format", "{{.Repository}} {{.Tag}}"]);
    assert!(l.lines().contains(&format!("{repo} 2").as_str()), "{l}");
    for t in [&t1, &t2] {
        let o = d.cli(&["rmi", t]);
        o.ok();
        assert!(o.stdout.contains(&format!("Untagged: {t}")), "{o}");
        assert!(
            !o.stdout.contains("Deleted"),
            "other tags keep the image: {o}"
        );
    }
    assert_eq!(id_of(d, "busybox"), id);
    d.cli(&["tag", "nosuch-image-xyz", &t1]).fails();
}

/// Imports a fresh image with a single tag and a distinct id.
fn private_image(d: &Daemon) -> (String, String) {
    let tag = format!("{}:v1", unique("private"));
    let rootfs = image::busybox_layer().expect("busybox layer").to_tar();
    let o = d.cli_in(
        &["import", "-c", &format!("LABEL private={tag}"), "-", &tag],
        &rootfs,
    );
    o.ok();
    (tag, o.out().to_string())
}

#[test]
fn rmi_refuses_an_image_in_use_unless_forced() {
    let d = d();
    let (tag, id) = private_image(d);
    let name = unique("user");
    let _rm = Rm(d, vec![name.clone()]);
    d.cli(&["create", "--name", &name, &tag, "true"]).ok();
    let o = d.cli(&["rmi", &tag]);
    o.code_is(1);
    assert!(o.stderr.contains("conflict"), "{o}");
    assert!(
        o.stderr.contains(&name) || o.stderr.contains("container"),
        "{o}"
    );
    assert_eq!(id_of(d, &tag), id);
    // With -f Docker untags, and deletes the image when only stopped containers use it; the
    // container keeps its layers and still runs.
    let f = d.cli(&["rmi", "-f", &tag]);
    f.ok();
    assert!(f.stdout.contains(&format!("Untagged: {tag}")), "{f}");
    assert!(!d.cli(&["image", "inspect", &tag]).success());
    d.cli(&["start", "-a", &name]).ok();
    d.cli(&["rm", &name]).ok();
    if d.cli(&["image", "inspect", &id]).success() {
        let del = d.cli(&["rmi", &id]);
        del.ok();
        assert!(del.stdout.contains(&format!("Deleted: {id}")), "{del}");
    }
    assert!(!d.cli(&["image", "inspect", &id]).success());
}

#[test]
fn rmi_keeps_an_image_a_running_container_uses() {
    let d = d();
    let (tag, id) = private_image(d);
    let name = unique("runner");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(d, &["--name", &name, &tag, "sleep", "60"]);
    let o = d.cli(&["rmi", &id]);
    o.code_is(1);
    assert!(
        o.stderr.contains("conflict") && o.stderr.contains("running container"),
        "{o}"
    );
    let f = d.cli(&["rmi", "-f", &tag]);
    f.ok();
    assert!(
        f.stdout.contains(&format!("Untagged: {tag}")) && !f.stdout.contains("Deleted"),
        "{f}"
    );
    assert!(
        d.cli(&["image", "inspect", &id]).success(),
        "an image a running container uses is kept"
    );
}

#[test]
fn rmi_by_id_with_several_tags_needs_force() {
    let d = d();
    let (tag, id) = private_image(d);
    let tag2 = format!("{tag}-second");
    d.cli(&["tag", &tag, &tag2]).ok();
    let o = d.cli(&["rmi", &id[7..19]]);
    o.code_is(1);
    assert!(
        o.stderr.contains("conflict") && o.stderr.contains("must be forced"),
        "{o}"
    );
    let f = d.cli(&["rmi", "-f", &id[7..19]]);
    f.ok();
    assert!(
        f.stdout.contains("Untagged:") && f.stdout.contains(&format!("Deleted: {id}")),
        "{f}"
    );
    let miss = d.cli(&["rmi", "nosuch-image-xyz"]);
    miss.code_is(1);
    assert!(miss.stderr.contains("No such image"), "{miss}");
}

// ---------------------------------------------------------------- layers

#[test]
fn whiteouts_and_opaque_dirs_are_honoured() {
    let d = d();
    let id = d.load_layered();
    assert_eq!(fmt(d, "layered", "{{len .RootFS.Layers}}"), "3");
    assert_eq!(id_of(d, "layered"), id);
    assert_eq!(sh_in(d, "layered", "ls /opt"), "keep.txt\nnew.txt");
    assert_eq!(sh_in(d, "layered", "ls -A /data"), "b.txt");
    assert_eq!(
        sh_in(d, "layered", "cat /etc/layer1 /opt/new.txt"),
        "one\nnew"
    );
    assert_eq!(sh_in(d, "layered", "ls -A /opt | grep -c wh || true"), "0");
    // A container's writes stay in its own layer.
    assert_eq!(
        sh_in(
            d,
            "layered",
            "rm /opt/keep.txt && echo x > /data/c && ls /opt && ls /data"
        ),
        "new.txt\nb.txt\nc"
    );
    assert_eq!(sh_in(d, "layered", "ls /opt"), "keep.txt\nnew.txt");
}

#[test]
fn hello_world_image() {
    let d = d();
    let id = d.load_hello();
    let l = d.cli(&["images", "hello-world", "-q", "--no-trunc"]);
    assert_eq!(l.out(), id, "{l}");
    let o = d.cli(&["run", "--rm", "hello-world"]);
    o.ok();
    assert!(o.stdout.starts_with("\nHello from Berth!\n"), "{o}");
}

// ---------------------------------------------------------------- hostile tarballs

const UP: &str = "../../../../../../../../../../../../../../../../../../../../";

struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("berth-canary-")
            .tempdir()
            .expect("canary dir");
        std::fs::write(dir.path().join("sentinel"), "original").expect("sentinel");
        Canary { dir }
    }
    fn path(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }
    /// `../../..<canary>` — the canary reached from any depth.
    fn up(&self) -> String {
        format!("{UP}{}", self.path().trim_start_matches('/'))
    }
    #[track_caller]
    fn check(&self, case: &str) {
        let names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read canary")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["sentinel".to_string()],
            "{case}: something escaped into {}",
            self.path()
        );
        let p = self.dir.path().join("sentinel");
        assert_eq!(
            std::fs::read_to_string(&p).expect("sentinel"),
            "original",
            "{case}: sentinel overwritten"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&p).expect("sentinel").nlink(),
            1,
            "{case}: sentinel hard-linked"
        );
    }
}

/// Loads a tarball through the API, then (if it loaded) makes a container of each tag so lazy
/// unpacking happens too. Returns the load status.
/// Loads `tar`; whether the load was refused (as in Docker, a 200 whose JSON stream ends with an
/// `errorDetail` line; a 4xx before the body is read counts too).
fn hostile_load(d: &Daemon, tar: &[u8], tag: &str) -> bool {
    let r = d
        .api_with(
            "POST",
            "/v1.45/images/load?quiet=1",
            &[("Content-Type", "application/x-tar")],
            Some(tar),
        )
        .expect("the daemon answers a hostile load");
    if r.status == 200 && d.cli(&["image", "inspect", tag]).success() {
        let name = unique("hostile");
        let _ = d.cli(&["create", "--name", &name, tag, "true"]);
        let _ = d.cli(&["start", "-a", &name]);
        let _ = d.cli(&["rm", "-f", &name]);
        let _ = d.cli(&["rmi", "-f", tag]);
    }
    assert!(
        d.ping(),
        "the daemon must survive a hostile tar; log:\n{}",
        d.log_text()
    );
    r.status >= 400 || (r.status == 200 && r.text().contains("\"errorDetail\""))
}

fn hostile_image(layer: Vec<u8>, tag: &str) -> Vec<u8> {
    Image::new(tag, json!({"Cmd": ["true"]}))
        .raw_layer("hostile", layer)
        .save_tar(SaveFormat::Oci)
}

#[test]
fn hostile_layer_dotdot_path() {
    let d = d();
    let c = Canary::new();
    let tag = format!("{}:x", unique("dotdot"));
    let mut l = RawTar::new();
    l.file(&format!("{}/dotdot", c.up()), 0o644, b"escaped")
        .file("ok", 0o644, b"fine");
    hostile_load(d, &hostile_image(l.finish(), &tag), &tag);
    c.check("../ path");
}

#[test]
fn hostile_layer_absolute_path() {
    let d = d();
    let c = Canary::new();
    let tag = format!("{}:x", unique("abs"));
    let mut l = RawTar::new();
    l.file(&format!("{}/abs", c.path()), 0o644, b"escaped");
    hostile_load(d, &hostile_image(l.finish(), &tag), &tag);
    c.check("absolute path");
}

#[test]
fn hostile_layer_symlink_then_write_through() {
    let d = d();
    let c = Canary::new();
    let tag = format!("{}:x", unique("symlink"));
    let mut l = RawTar::new();
    l.symlink("link", &c.path())
        .file("link/through", 0o644, b"escaped")
        .symlink("rel", &c.up())
        .file("rel/through2", 0o644, b"escaped")
        .dir("d", 0o755)
        .symlink("d/up", "../../../../../../../../../../../../")
        .file(
            &format!("d/up/{}/through3", c.path().trim_start_matches('/')),
            0o644,
            b"escaped",
        )
        .symlink("sl", &format!("{}/sentinel", c.path()))
        .file("sl", 0o644, b"pwned");
    hostile_load(d, &hostile_image(l.finish(), &tag), &tag);
    c.check("symlink then write through");
}

#[test]
fn hostile_layer_hardlink_out() {
    let d = d();
    let c = Canary::new();
    let tag = format!("{}:x", unique("hardlink"));
    let mut l = RawTar::new();
    l.hardlink("hl", &format!("{}/sentinel", c.path()))
        .file("hl", 0o644, b"pwned")
        .hardlink("hl2", &format!("{}/sentinel", c.up()))
        .file("hl2", 0o644, b"pwned")
        .symlink("s", &c.path())
        .hardlink("hl3", "s/sentinel")
        .file("hl3", 0o644, b"pwned");
    hostile_load(d, &hostile_image(l.finish(), &tag), &tag);
    c.check("hardlink out");
}

#[test]
fn hostile_outer_archive() {
    let d = d();
    let c = Canary::new();
    let tag = format!("{}:x", unique("outer"));
    // An entry of the save tarball itself escapes, and manifest.json points outside.
    let mut t = RawTar::new();
    t.file(&format!("{}/outer", c.up()), 0o644, b"escaped");
    t.file(
        "manifest.json",
        0o644,
        format!(r#"[{{"Config":"{0}/sentinel","RepoTags":["{tag}"],"Layers":["{UP}etc/passwd","{0}/sentinel"]}}]"#, c.up())
            .as_bytes(),
    );
    let refused = hostile_load(d, &t.finish(), &tag);
    assert!(
        refused,
        "a manifest pointing outside the archive must fail the load"
    );
    assert!(!d.cli(&["image", "inspect", &tag]).success());
    c.check("outer archive");
    let sock_dir = Path::new(d.root());
    assert!(!sock_dir.join("outer").exists());
}

#[test]
fn hostile_layer_digest_mismatch() {
    let d = d();
    let mut good = Layer::new();
    good.file("good", 0o644, "good");
    let mut evil = Layer::new();
    evil.file("evil", 0o644, "evil");
    let (good, evil) = (good.to_tar(), evil.to_tar());
    let tag = format!("{}:x", unique("mismatch"));
    let img = Image::new(&tag, json!({"Cmd": ["true"]})).raw_layer("good", good.clone());

    // Docker ≥ 25 layout: the blob named by the good digest holds other bytes.
    let oci = img.save_tar(SaveFormat::Oci);
    let swapped = swap_file(
        &oci,
        &format!("blobs/sha256/{}", &image::sha256_digest(&good)[7..]),
        &evil,
    );
    let refused = hostile_load(d, &swapped, &tag);
    assert!(
        refused,
        "a blob that does not match its digest must fail the load"
    );
    assert!(!d.cli(&["image", "inspect", &tag]).success());

    // Legacy layout: the layer does not match the config's diff_ids.
    let legacy = img.save_tar(SaveFormat::Legacy);
    let names = image::tar_entry_names(&legacy).expect("tar");
    let layer = names
        .iter()
        .find(|n| n.ends_with("/layer.tar"))
        .expect("layer.tar");
    let swapped = swap_file(&legacy, layer, &evil);
    let refused = hostile_load(d, &swapped, &tag);
    assert!(
        refused,
        "a layer that does not match the config's diff_ids must fail the load"
    );
    assert!(!d.cli(&["image", "inspect", &tag]).success());
}

/// Rewrites a tar with the content of one file replaced.
fn swap_file(tar: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = RawTar::new();
    for n in image::tar_entry_names(tar).expect("tar") {
        if n.ends_with('/') {
            out.dir(&n, 0o755);
        } else if n == name {
            out.file(&n, 0o644, data);
        } else {
            let content = image::tar_read_file(tar, &n)
                .expect("read")
                .unwrap_or_default();
            out.file(&n, 0o644, &content);
        }
    }
    out.finish()
}

#[test]
fn layers_are_unpacked_once_and_shared() {
    let d = d();
    d.load_busybox();
    d.load_layered();
    // Importing the same rootfs gives the same layer (same diff id): still one copy.
    let rootfs = image::busybox_layer().expect("busybox layer").to_tar();
    d.cli_in(
        &["import", "-", &format!("{}:v1", unique("shared"))],
        &rootfs,
    )
    .ok();
    let layers = d.data_root().join("image").join("layers");
    let copies: Vec<String> = std::fs::read_dir(&layers)
        .unwrap_or_else(|e| panic!("{}: {e}", layers.display()))
        .flatten()
        .filter(|e| e.path().join("diff").join("bin").join("busybox").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "the busybox layer should be unpacked once: {copies:?}"
    );
    let diff = image::busybox_image().expect("busybox").diff_ids()[0].clone();
    assert_eq!(
        copies[0],
        diff[7..],
        "a base layer's directory is named by its chain id (= its diff id)"
    );
}

#[test]
fn save_and_import_are_image_events() {
    let d = d();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let id = id_of(d, "busybox");
    let r = d.api("GET", "/v1.45/images/busybox/get");
    assert_eq!(r.status, 200);
    // A one-file rootfs imported as a new image.
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    tb.append_data(&mut h, "hi", &b"hi"[..]).expect("tar");
    let tar = tb.into_inner().expect("tar");
    let r = d
        .api_with(
            "POST",
            "/v1.45/images/create?fromSrc=-",
            &[("Content-Type", "application/x-tar")],
            Some(&tar),
        )
        .expect("import");
    assert_eq!(r.status, 200, "{}", r.text());
    let imported = r.text().lines().last().map(|l| {
        serde_json::from_str::<Value>(l).expect("json")["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let imported = imported.unwrap_or_default();
    assert!(imported.starts_with("sha256:"), "{}", r.text());
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let ev = d.api(
        "GET",
        &format!("/v1.45/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D"),
    );
    let evs: Vec<Value> = ev
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let has = |action: &str, who: &str| {
        evs.iter()
            .any(|e| e["Action"] == json!(action) && e["Actor"]["ID"] == json!(who))
    };
    assert!(has("save", &id), "{evs:?}");
    assert!(has("import", &imported), "{evs:?}");
    let _ = d.cli(&["rmi", &imported]);
}
