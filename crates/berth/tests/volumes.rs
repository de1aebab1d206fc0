//! Volumes, binds and tmpfs mounts against a real daemon: the `/volumes` API, `run -v`,
//! `--mount`, `--tmpfs`, `--volumes-from`, copy-up of image content, `rm -v` and `run --rm`,
//! and mounts through symlinks in the image staying inside the rootfs.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A path that must never appear on the host: the image links `/escape` towards it.
const ESCAPE_NAME: &str = "berth-volume-escape-probe";

/// `volimg:latest`: busybox plus `/data` (declared `VOLUME`) holding files with owners and
/// modes, and two symlinks that point out of the rootfs if followed on the host.
fn volimg() -> &'static Image {
    static IMG: OnceLock<Image> = OnceLock::new();
    IMG.get_or_init(|| {
        let base = image::busybox_layer().expect("busybox layer");
        let mut l = Layer::new();
        l.file_owned("data/seed.txt", 0o640, 1000, 1001, "seed\n")
            .file("data/sub/deep.txt", 0o600, "deep\n")
            .symlink("data/link", "seed.txt")
            .symlink("link-etc", "/etc")
            .symlink(
                "escape",
                &format!("../../../../../../../../../../{ESCAPE_NAME}"),
            );
        Image::new(
            "volimg:latest",
            json!({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "Volumes": {"/data": {}}}),
        )
        .layer("/bin/sh -c #(nop) ADD busybox-static rootfs", &base)
        .layer("/bin/sh -c #(nop) ADD data", &l)
    })
}

fn dv() -> &'static Daemon {
    let d = d();
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        d.load_image(volimg(), SaveFormat::Oci).ok();
    });
    d
}

fn api_json(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|v| v.to_string());
    let r = d
        .api_with(
            method,
            path,
            &[("Content-Type", "application/json")],
            b.as_deref().map(str::as_bytes),
        )
        .expect("api request");
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json().unwrap_or(Value::Null)
    };
    (r.status, v)
}

fn volume_dir(d: &Daemon, name: &str) -> PathBuf {
    d.data_root().join("volumes").join(name)
}

/// `volume rm -f` on drop.
struct RmVol<'a>(&'a Daemon, Vec<String>);
impl Drop for RmVol<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = self
                .0
                .api_with("DELETE", &format!("/volumes/{n}?force=1"), &[], None);
        }
    }
}

fn mounts_of(d: &Daemon, name: &str) -> Vec<Value> {
    d.inspect(name)
        .and_then(|v| v["Mounts"].as_array().cloned())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------ the acceptance

#[test]
fn named_volume_data_outlives_its_container() {
    let d = dv();
    let vol = unique("keep");
    let _v = RmVol(d, vec![vol.clone()]);
    let spec = format!("{vol}:/store");
    // The first `run -v name:` creates the volume.
    sh(d, &["-v", &spec], "echo persisted > /store/f; sync");
    assert!(volume_dir(d, &vol).join("_data/f").exists());
    // A second container, after the first was removed, sees the data.
    assert_eq!(sh(d, &["-v", &spec], "cat /store/f"), "persisted");
    // `rm -v` never takes a named volume.
    let c = unique("c");
    d.cli(&["create", "--name", &c, "-v", &spec, "busybox", "true"])
        .ok();
    d.cli(&["rm", "-v", &c]).ok();
    assert!(volume_dir(d, &vol).join("_data/f").exists());
    let (st, v) = api_json(d, "GET", &format!("/volumes/{vol}"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Name"], vol.as_str());
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(
        v["Mountpoint"],
        volume_dir(d, &vol).join("_data").display().to_string()
    );
    assert!(
        v["CreatedAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    assert!(v["Labels"].is_object() && v["Options"].is_object(), "{v}");
}

#[test]
fn read_only_mounts_refuse_writes() {
    let d = dv();
    let vol = unique("ro");
    let _v = RmVol(d, vec![vol.clone()]);
    let o = d.cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/ro:ro"),
        "busybox",
        "sh",
        "-c",
        "touch /ro/x",
    ]);
    o.fails();
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert!(!volume_dir(d, &vol).join("_data/x").exists());

    let host = d.root().join(unique("bindro"));
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("in"), "from host\n").expect("write");
    let m = format!("type=bind,source={},target=/b,readonly", host.display());
    let o = d.cli(&[
        "run",
        "--rm",
        "--mount",
        &m,
        "busybox",
        "sh",
        "-c",
        "cat /b/in; touch /b/y",
    ]);
    o.fails();
    assert!(o.stdout.contains("from host"), "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert!(!host.join("y").exists());
    // And the same bind read-write writes through to the host.
    let spec = format!("{}:/b", host.display());
    sh(d, &["-v", &spec], "echo back > /b/y");
    assert_eq!(
        std::fs::read_to_string(host.join("y")).expect("read"),
        "back\n"
    );
}

#[test]
fn image_content_is_copied_into_a_new_volume_once() {
    let d = dv();
    let vol = unique("cu");
    let _v = RmVol(d, vec![vol.clone()]);
    let spec = format!("{vol}:/data");
    let out = sh_img(
        d,
        &["-v", &spec],
        "volimg",
        "cat /data/seed.txt /data/sub/deep.txt; stat -c '%u:%g:%a' /data/seed.txt; readlink /data/link",
    );
    assert_eq!(out, "seed\ndeep\n1000:1001:640\nseed.txt");
    let data = volume_dir(d, &vol).join("_data");
    let md = std::fs::metadata(data.join("seed.txt")).expect("copied");
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1000, 1001, 0o640)
    );
    // Change the volume; the next container must see the change, not the image again.
    sh_img(
        d,
        &["-v", &spec],
        "volimg",
        "rm /data/seed.txt; echo mine > /data/own.txt",
    );
    let out = sh_img(d, &["-v", &spec], "volimg", "ls /data");
    assert_eq!(out, "link\nown.txt\nsub", "copied once, never again");

    // `nocopy` leaves a new volume empty; a bind is never filled.
    let nc = unique("nocopy");
    let _v2 = RmVol(d, vec![nc.clone()]);
    let out = sh_img(
        d,
        &["-v", &format!("{nc}:/data:nocopy")],
        "volimg",
        "ls -A /data | wc -l",
    );
    assert_eq!(out, "0");
    let host = d.root().join(unique("bindempty"));
    std::fs::create_dir_all(&host).expect("mkdir");
    let out = sh_img(
        d,
        &["-v", &format!("{}:/data", host.display())],
        "volimg",
        "ls -A /data | wc -l",
    );
    assert_eq!(out, "0");
}

/// `run --rm <image> sh -c <script>` for another image.
#[track_caller]
fn sh_img(d: &Daemon, extra: &[&str], img: &str, script: &str) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&[img, "sh", "-c", script]);
    let o = d.cli(&a);
    o.ok();
    o.out().to_string()
}

#[test]
fn anonymous_volumes_from_image_and_v_and_their_removal() {
    let d = dv();
    let c = unique("anon");
    let mut rm = Rm(d, vec![c.clone()]);
    d.cli(&[
        "run",
        "--name",
        &c,
        "-v",
        "/scratch",
        "volimg",
        "sh",
        "-c",
        "cat /data/seed.txt > /scratch/copy",
    ])
    .ok();
    let mounts = mounts_of(d, &c);
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    let mut names = Vec::new();
    for m in &mounts {
        assert_eq!(m["Type"], "volume", "{m}");
        assert_eq!(m["Driver"], "local", "{m}");
        assert_eq!(m["RW"], true, "{m}");
        let n = m["Name"].as_str().unwrap_or_default().to_string();
        assert!(is_hex(&n, 64), "anonymous volume names are 64 hex: {m}");
        assert_eq!(
            m["Source"],
            volume_dir(d, &n).join("_data").display().to_string()
        );
        names.push(n);
    }
    let scratch = mounts
        .iter()
        .find(|m| m["Destination"] == "/scratch")
        .and_then(|m| m["Name"].as_str())
        .expect("scratch mount");
    assert_eq!(
        std::fs::read_to_string(volume_dir(d, scratch).join("_data/copy")).expect("read"),
        "seed\n"
    );
    let (_, v) = api_json(d, "GET", &format!("/volumes/{scratch}"), None);
    assert!(
        v["Labels"].get("com.docker.volume.anonymous").is_some(),
        "{v}"
    );
    // In use: refused, Docker's words.
    let (st, v) = api_json(d, "DELETE", &format!("/volumes/{scratch}"), None);
    assert_eq!(st, 409, "{v}");
    let id = d.fmt(&c, "{{.Id}}");
    assert_eq!(
        v["message"],
        format!("remove {scratch}: volume is in use - [{id}]")
    );
    // `ps --filter volume=` by name and by destination.
    let o = d.cli(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("volume={scratch}"),
    ]);
    assert_eq!(o.out(), id, "{o}");
    let o = d.cli(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        "volume=/scratch",
    ]);
    assert!(o.out().lines().any(|l| l == id), "{o}");
    // `rm -v` removes them.
    d.cli(&["rm", "-v", &c]).ok();
    rm.1.clear();
    for n in &names {
        assert!(!volume_dir(d, n).exists(), "anonymous volume {n} removed");
    }

    // Plain `rm` keeps them.
    let c2 = unique("anon2");
    d.cli(&["create", "--name", &c2, "volimg", "true"]).ok();
    let n = mounts_of(d, &c2)[0]["Name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let _v = RmVol(d, vec![n.clone()]);
    d.cli(&["rm", &c2]).ok();
    assert!(volume_dir(d, &n).exists());
}

#[test]
fn run_rm_removes_anonymous_volumes() {
    let d = dv();
    let c = unique("rmanon");
    let named = unique("rmnamed");
    let _v = RmVol(d, vec![named.clone()]);
    let _rm = Rm(d, vec![c.clone()]);
    run_d(
        d,
        &[
            "--rm",
            "--name",
            &c,
            "-v",
            &format!("{named}:/n"),
            "volimg",
            "sleep",
            "30",
        ],
    );
    let anon: Vec<String> = mounts_of(d, &c)
        .iter()
        .filter(|m| m["Destination"] == "/data")
        .filter_map(|m| m["Name"].as_str().map(String::from))
        .collect();
    assert_eq!(anon.len(), 1);
    assert!(volume_dir(d, &anon[0]).exists());
    d.cli(&["stop", "-t", "0", &c]).ok();
    assert!(
        wait_until(DEADLINE, || !volume_dir(d, &anon[0]).exists()),
        "anonymous volume of a --rm container is removed"
    );
    assert!(volume_dir(d, &named).exists(), "the named one stays");
}

// ------------------------------------------------------------------------ the /volumes API

#[test]
fn volume_api_create_list_inspect_remove() {
    let d = dv();
    let a = unique("apia");
    let _v = RmVol(d, vec![a.clone()]);
    let (st, v) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": a, "Labels": {"team": "x", "tier": "db"}})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["Labels"]["team"], "x");
    // Idempotent for the same name.
    let (st, v2) = api_json(d, "POST", "/volumes/create", Some(json!({"Name": a})));
    assert_eq!(st, 201);
    assert_eq!(v2["CreatedAt"], v["CreatedAt"]);

    let list = |filters: &str| -> Vec<String> {
        let (st, v) = api_json(
            d,
            "GET",
            &format!("/volumes?filters={}", urlenc(filters)),
            None,
        );
        assert_eq!(st, 200, "{v}");
        v["Volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x["Name"].as_str().map(String::from))
            .collect()
    };
    assert!(list(&format!(r#"{{"name":["{a}"]}}"#)).contains(&a));
    assert!(list(r#"{"label":["team=x"]}"#).contains(&a));
    assert!(!list(r#"{"label":["team=y"]}"#).contains(&a));
    assert!(list(r#"{"dangling":["true"]}"#).contains(&a));
    assert!(list(r#"{"driver":["local"]}"#).contains(&a));
    let (st, _) = api_json(
        d,
        "GET",
        &format!("/volumes?filters={}", urlenc(r#"{"nope":["1"]}"#)),
        None,
    );
    assert_eq!(st, 400);

    let c = unique("user");
    let _rm = Rm(d, vec![c.clone()]);
    d.cli(&[
        "create",
        "--name",
        &c,
        "-v",
        &format!("{a}:/a"),
        "busybox",
        "true",
    ])
    .ok();
    assert!(!list(r#"{"dangling":["true"]}"#).contains(&a));
    assert!(list(r#"{"dangling":["false"]}"#).contains(&a));
    let m = &mounts_of(d, &c)[0];
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Name"], a.as_str());
    assert_eq!(m["Destination"], "/a");
    assert_eq!(m["Mode"], "z");
    let (st, v) = api_json(d, "DELETE", &format!("/volumes/{a}"), None);
    assert_eq!(st, 409, "{v}");
    d.cli(&["rm", &c]).ok();
    let (st, _) = api_json(d, "DELETE", &format!("/volumes/{a}"), None);
    assert_eq!(st, 204);
    assert!(!volume_dir(d, &a).exists());
    let (st, v) = api_json(d, "GET", &format!("/volumes/{a}"), None);
    assert_eq!(st, 404);
    assert_eq!(v["message"], format!("get {a}: no such volume"));
    let (st, v) = api_json(d, "DELETE", &format!("/volumes/{a}"), None);
    assert_eq!(
        (st, v["message"].clone()),
        (404, json!(format!("get {a}: no such volume")))
    );
    let (st, _) = api_json(d, "DELETE", &format!("/volumes/{a}?force=1"), None);
    assert_eq!(st, 204);

    // Generated names are 64 hex; bad names and options are 400, unknown drivers 404.
    let (st, v) = api_json(d, "POST", "/volumes/create", Some(json!({})));
    assert_eq!(st, 201);
    let gen = v["Name"].as_str().unwrap_or_default().to_string();
    let _g = RmVol(d, vec![gen.clone()]);
    assert!(is_hex(&gen, 64), "{v}");
    let (st, _) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": "bad/name"})),
    );
    assert_eq!(st, 400);
    let (st, _) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": unique("o"), "DriverOpts": {"bogus": "1"}})),
    );
    assert_eq!(st, 400);
    let (st, _) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": unique("p"), "Driver": "nosuchplugin"})),
    );
    assert_eq!(st, 404);
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prune_takes_unused_anonymous_volumes_unless_all() {
    let d = dv();
    let named = unique("prunenamed");
    let _v = RmVol(d, vec![named.clone()]);
    api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": named, "Labels": {"prunetest": "1"}})),
    );
    std::fs::write(volume_dir(d, &named).join("_data/blob"), vec![7u8; 4096]).expect("write");
    // An anonymous volume left behind by a plain rm.
    let c = unique("pruneanon");
    d.cli(&["create", "--name", &c, "-v", "/x", "busybox", "true"])
        .ok();
    let anon = mounts_of(d, &c)[0]["Name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let _a = RmVol(d, vec![anon.clone()]);
    d.cli(&["rm", &c]).ok();
    let (st, v) = api_json(d, "POST", "/volumes/prune", None);
    assert_eq!(st, 200, "{v}");
    let deleted: Vec<String> = v["VolumesDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect();
    assert!(deleted.contains(&anon), "{v}");
    assert!(!deleted.contains(&named), "{v}");
    assert!(volume_dir(d, &named).exists());
    // `all=true` (with a label filter, so other tests' volumes are left alone) takes named ones.
    let f = urlenc(r#"{"all":["true"],"label":["prunetest=1"]}"#);
    let (st, v) = api_json(d, "POST", &format!("/volumes/prune?filters={f}"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["VolumesDeleted"], json!([named]));
    assert!(v["SpaceReclaimed"].as_u64().unwrap_or(0) >= 4096, "{v}");
    assert!(!volume_dir(d, &named).exists());
}

#[test]
fn a_volume_created_without_a_name_is_anonymous_and_pruned_by_default() {
    // A daemon of its own: the other prune tests would take this anonymous volume.
    let own = Daemon::start(BIN);
    let d = &own;
    let (st, v) = api_json(d, "POST", "/volumes/create", Some(json!({})));
    assert_eq!(st, 201, "{v}");
    let name = v["Name"].as_str().unwrap_or_default().to_string();
    let _v = RmVol(d, vec![name.clone()]);
    assert!(is_hex(&name, 64), "{v}");
    assert_eq!(v["Labels"]["com.docker.volume.anonymous"], json!(""), "{v}");
    // A named one with the same body otherwise is not anonymous.
    let named = unique("notanon");
    let _n = RmVol(d, vec![named.clone()]);
    let (_, nv) = api_json(d, "POST", "/volumes/create", Some(json!({"Name": named})));
    assert!(
        nv["Labels"].get("com.docker.volume.anonymous").is_none(),
        "{nv}"
    );
    let (st, p) = api_json(d, "POST", "/volumes/prune", None);
    assert_eq!(st, 200, "{p}");
    let deleted = p["VolumesDeleted"].as_array().cloned().unwrap_or_default();
    assert!(deleted.contains(&json!(name)), "{p}");
    assert!(!deleted.contains(&json!(named)), "{p}");
}

// ------------------------------------------------------------------------ tmpfs and drivers

#[test]
fn tmpfs_mounts_use_the_kernel_tmpfs() {
    let d = dv();
    let out = sh(
        d,
        &[
            "--tmpfs",
            "/t:size=64m,mode=1770",
            "--mount",
            "type=tmpfs,dst=/t2,tmpfs-size=1m",
        ],
        "grep -E ' /t2? ' /proc/mounts; stat -c %a /t; echo x > /t/f && cat /t/f",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let t = lines.iter().find(|l| l.contains(" /t ")).expect("/t");
    assert!(t.starts_with("tmpfs /t tmpfs"), "{t}");
    assert!(t.contains("size=65536k") && t.contains("mode=1770"), "{t}");
    assert!(
        t.contains("nosuid") && t.contains("nodev") && t.contains("noexec"),
        "{t}"
    );
    let t2 = lines.iter().find(|l| l.contains(" /t2 ")).expect("/t2");
    assert!(t2.contains("size=1024k"), "{t2}");
    assert_eq!(lines[2], "1770");
    assert_eq!(lines[3], "x");
}

fn host_mounted(path: &std::path::Path) -> bool {
    let want = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

#[test]
fn local_driver_options_mount_at_start_and_unmount_after() {
    let d = dv();
    let tv = unique("tmpfsvol");
    let bv = unique("bindvol");
    let _v = RmVol(d, vec![tv.clone(), bv.clone()]);
    let (st, v) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(
            json!({"Name": tv, "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["Options"]["type"], "tmpfs");
    let data = volume_dir(d, &tv).join("_data");
    assert!(
        !host_mounted(&data),
        "not mounted before a container uses it"
    );
    let out = sh(d, &["-v", &format!("{tv}:/v")], "grep ' /v ' /proc/mounts");
    assert!(
        out.starts_with("tmpfs /v tmpfs") && out.contains("size=2048k"),
        "{out}"
    );
    assert!(
        wait_until(DEADLINE, || !host_mounted(&data)),
        "unmounted when its last container is gone"
    );

    let host = d.root().join(unique("device"));
    std::fs::create_dir_all(&host).expect("mkdir");
    let (st, v) = api_json(
        d,
        "POST",
        "/volumes/create",
        Some(
            json!({"Name": bv, "DriverOpts": {"type": "none", "o": "bind", "device": host.display().to_string()}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    sh(d, &["-v", &format!("{bv}:/v")], "echo through > /v/f");
    assert_eq!(
        std::fs::read_to_string(host.join("f")).expect("on the device"),
        "through\n"
    );
    let data = volume_dir(d, &bv).join("_data");
    assert!(wait_until(DEADLINE, || !host_mounted(&data)));
    // Removing the volume unmounts, never deletes the device's content.
    let (st, _) = api_json(d, "DELETE", &format!("/volumes/{bv}"), None);
    assert_eq!(st, 204);
    assert!(
        host.join("f").exists(),
        "the bound directory keeps its data"
    );
}

// ------------------------------------------------------------------------ volumes-from, errors

#[test]
fn volumes_from_shares_mounts_with_mode() {
    let d = dv();
    let vol = unique("shared");
    let _v = RmVol(d, vec![vol.clone()]);
    let src = unique("src");
    let _rm = Rm(d, vec![src.clone()]);
    d.cli(&[
        "run",
        "--name",
        &src,
        "-v",
        &format!("{vol}:/shared"),
        "busybox",
        "sh",
        "-c",
        "echo from-src > /shared/f",
    ])
    .ok();
    assert_eq!(
        sh(d, &["--volumes-from", &src], "cat /shared/f"),
        "from-src"
    );
    let o = d.cli(&[
        "run",
        "--rm",
        "--volumes-from",
        &format!("{src}:ro"),
        "busybox",
        "sh",
        "-c",
        "touch /shared/g",
    ]);
    o.fails();
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    let o = d.cli(&[
        "run",
        "--rm",
        "--volumes-from",
        "nosuchcontainer-xyz",
        "busybox",
        "true",
    ]);
    o.code_is(125);
    assert!(
        o.stderr.contains("No such container: nosuchcontainer-xyz"),
        "{o}"
    );
}

#[test]
fn bad_mount_specs_are_docker_errors() {
    let d = dv();
    let o = d.cli(&["run", "--rm", "-v", "relative/path:/x", "busybox", "true"]);
    o.code_is(125);
    assert!(o.stderr.contains("create relative/path: \"relative/path\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"), "{o}");
    let missing = d.root().join(unique("missing"));
    let m = format!("type=bind,src={},dst=/x", missing.display());
    let o = d.cli(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    o.code_is(125);
    assert!(
        o.stderr.contains(&format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {}",
            missing.display()
        )),
        "{o}"
    );
    // `-v` with a missing host path creates it.
    let spec = format!("{}:/x", missing.display());
    sh(d, &["-v", &spec], "touch /x/made");
    assert!(missing.join("made").exists());
    let o = d.cli(&[
        "run", "--rm", "-v", "/a:/same", "-v", "/b:/same", "busybox", "true",
    ]);
    o.code_is(125);
    assert!(o.stderr.contains("Duplicate mount point: /same"), "{o}");
    let o = d.cli(&["run", "--rm", "-v", "vname:/x:bogus", "busybox", "true"]);
    o.code_is(125);
    assert!(o.stderr.contains("invalid mode: bogus"), "{o}");
    let o = d.cli(&["run", "--rm", "--tmpfs", "/t:nonsense", "busybox", "true"]);
    o.code_is(125);
    // Nothing was left behind by the failed creates.
    let (_, v) = api_json(d, "GET", "/volumes/vname", None);
    assert_eq!(v["message"], "get vname: no such volume");
}

#[test]
fn mounts_through_image_symlinks_stay_in_the_rootfs() {
    let d = dv();
    let probe = PathBuf::from("/").join(ESCAPE_NAME);
    let _ = std::fs::remove_dir_all(&probe);
    let esc = unique("esc");
    let etc = unique("etc");
    let _v = RmVol(d, vec![esc.clone(), etc.clone()]);
    let marker = unique("marker");
    // `/escape` -> ../../../../berth-volume-escape-probe: resolved in the rootfs, it is
    // `/berth-volume-escape-probe` of the container.
    let out = sh_img(
        d,
        &["-v", &format!("{esc}:/escape")],
        "volimg",
        &format!("echo x > /escape/{marker}; ls /{ESCAPE_NAME}"),
    );
    assert_eq!(out, marker);
    assert!(
        !probe.exists(),
        "a mount followed an image symlink out of the rootfs"
    );
    assert!(volume_dir(d, &esc).join("_data").join(&marker).exists());
    // `/link-etc` -> /etc: the container's /etc, filled from the image, never the host's.
    let out = sh_img(
        d,
        &["-v", &format!("{etc}:/link-etc")],
        "volimg",
        &format!(
            "echo x > /etc/{marker}; grep -c root /etc/passwd; [ \"$(cat /etc/hostname)\" = \"$(hostname)\" ] && echo hostname-bind-on-top"
        ),
    );
    assert_eq!(
        out, "1\nhostname-bind-on-top",
        "the /etc volume is mounted before the /etc/hostname bind"
    );
    assert!(!PathBuf::from("/etc").join(&marker).exists());
    let data = volume_dir(d, &etc).join("_data");
    assert!(data.join(&marker).exists());
    assert!(
        data.join("passwd").exists(),
        "copy-up followed the link inside the image"
    );
}

// ------------------------------------------------------------------------ the berth CLI

#[test]
fn berth_volume_commands() {
    let d = dv();
    let a = unique("cli");
    let _v = RmVol(d, vec![a.clone()]);
    let o = d.cli(&["volume", "create", "--label", "k=v", &a]);
    o.ok();
    assert_eq!(o.out(), a);
    let o = d.cli(&["volume", "ls"]);
    o.ok();
    assert_eq!(
        o.lines()[0].split_whitespace().collect::<Vec<_>>(),
        ["DRIVER", "VOLUME", "NAME"]
    );
    assert!(
        o.lines()
            .iter()
            .any(|l| l.starts_with("local") && l.ends_with(a.as_str())),
        "{o}"
    );
    let o = d.cli(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=k=v",
        "--filter",
        &format!("name={a}"),
    ]);
    assert_eq!(o.out(), a, "{o}");
    let o = d.cli(&[
        "volume",
        "inspect",
        "--format",
        "{{.Name}} {{.Driver}} {{.Labels.k}}",
        &a,
    ]);
    assert_eq!(o.out(), format!("{a} local v"), "{o}");
    let o = d.cli(&["volume", "inspect", &a]);
    assert_eq!(
        o.json()[0]["Mountpoint"],
        volume_dir(d, &a).join("_data").display().to_string()
    );
    let o = d.cli(&["volume", "inspect", "no-such-vol"]);
    o.code_is(1);
    assert!(o.stderr.contains("get no-such-vol: no such volume"), "{o}");
    let o = d.cli(&["volume", "create", "bad/name"]);
    o.fails();
    assert!(
        o.stderr
            .contains("includes invalid characters for a local volume name"),
        "{o}"
    );

    let c = unique("cliuser");
    let _rm = Rm(d, vec![c.clone()]);
    d.cli(&[
        "create",
        "--name",
        &c,
        "-v",
        &format!("{a}:/a"),
        "busybox",
        "true",
    ])
    .ok();
    let o = d.cli(&["volume", "rm", &a]);
    o.code_is(1);
    assert!(
        o.stderr
            .contains(&format!("remove {a}: volume is in use - [")),
        "{o}"
    );
    let o = d.cli(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("volume={a}"),
        "--format",
        "{{.Names}} {{.Mounts}}",
    ]);
    assert_eq!(o.out(), format!("{c} {a}"), "{o}");
    d.cli(&["rm", &c]).ok();
    // Prune without --all keeps named volumes; with it (and a label filter) takes them.
    let o = d.cli(&["volume", "prune", "-f", "--filter", "label=k=v"]);
    o.ok();
    assert!(!o.stdout.contains(&a), "{o}");
    let o = d.cli(&["volume", "prune", "-a", "-f", "--filter", "label=k=v"]);
    o.ok();
    assert!(
        o.stdout.starts_with(&format!("Deleted Volumes:\n{a}\n")),
        "{o}"
    );
    assert!(o.stdout.contains("Total reclaimed space: "), "{o}");
    d.cli(&["volume", "rm", &a]).code_is(1);
    d.cli(&["volume", "rm", "-f", &a]).ok();
}

// ------------------------------------------------------------------------ daemon restart

#[test]
fn volumes_and_their_users_survive_a_daemon_restart() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let spec = "kept:/k";
    sh(&d, &["-v", spec], "echo before > /k/f");
    d.cli(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "tv",
    ])
    .ok();
    run_d(
        &d,
        &[
            "--name",
            "holder",
            "-v",
            "tv:/t",
            "-v",
            "kept:/k",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    let tdata = d.data_root().join("volumes/tv/_data");
    assert!(host_mounted(&tdata));
    d.restart();
    let o = d.cli(&["volume", "ls", "-q"]);
    assert_eq!(o.lines(), ["kept", "tv"], "{o}");
    assert_eq!(
        std::fs::read_to_string(d.data_root().join("volumes/kept/_data/f")).expect("data"),
        "before\n"
    );
    let o = d.cli(&["volume", "rm", "kept"]);
    o.code_is(1);
    assert!(o.stderr.contains("volume is in use"), "{o}");
    assert!(
        host_mounted(&tdata),
        "a running user keeps the driver mount"
    );
    d.cli(&["stop", "holder"]).ok();
    assert!(
        wait_until(DEADLINE, || !host_mounted(&tdata)),
        "the restored user's exit releases the mount"
    );
    d.cli(&["rm", "holder"]).ok();
    d.cli(&["volume", "rm", "kept", "tv"]).ok();
    assert!(!d.data_root().join("volumes/kept").exists());
}

#[test]
fn mount_flag_volumes_with_driver_options_and_read_only_rootfs() {
    let d = dv();
    let name = unique("mopt");
    let _v = RmVol(d, vec![name.clone()]);
    let m = format!(
        "type=volume,src={name},dst=/m,volume-label=made=by-mount,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=3m"
    );
    let out = sh(
        d,
        &["--read-only", "--mount", &m],
        "grep ' /m ' /proc/mounts; echo w > /m/f && echo wrote; touch /rootfs-file 2>/dev/null || echo rootfs-ro",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("tmpfs /m tmpfs") && lines[0].contains("size=3072k"),
        "{out}"
    );
    assert_eq!(&lines[1..], ["wrote", "rootfs-ro"], "{out}");
    let (st, v) = api_json(d, "GET", &format!("/volumes/{name}"), None);
    assert_eq!(st, 200);
    assert_eq!(v["Labels"]["made"], "by-mount", "{v}");
    assert_eq!(v["Options"]["o"], "size=3m", "{v}");
}

#[test]
fn volume_driver_and_old_api_prune() {
    let d = dv();
    let o = d.cli(&[
        "run",
        "--rm",
        "--volume-driver",
        "nosuchdriver",
        "-v",
        "/x",
        "busybox",
        "true",
    ]);
    o.code_is(125);
    assert!(
        o.stderr.contains("plugin \"nosuchdriver\" not found"),
        "{o}"
    );
    // Before API 1.42, prune takes unused named volumes too.
    let named = unique("oldprune");
    let _v = RmVol(d, vec![named.clone()]);
    api_json(
        d,
        "POST",
        "/volumes/create",
        Some(json!({"Name": named, "Labels": {"oldprune": named}})),
    );
    let f = urlenc(&format!(r#"{{"label":["oldprune={named}"]}}"#));
    let (st, v) = api_json(
        d,
        "POST",
        &format!("/v1.45/volumes/prune?filters={f}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["VolumesDeleted"], json!([]), "{v}");
    let (st, v) = api_json(
        d,
        "POST",
        &format!("/v1.41/volumes/prune?filters={f}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["VolumesDeleted"], json!([named]), "{v}");
}

#[test]
fn read_only_binds_are_read_only_all_the_way_down() {
    let d = dv();
    let host = d.root().join(unique("rro"));
    let sub = host.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&sub)
        .status()
        .expect("mount");
    assert!(status.success());
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Umount(sub.clone());
    let o = d.cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/b:ro", host.display()),
        "busybox",
        "sh",
        "-c",
        "grep -q ' /b/sub ' /proc/mounts && echo submount; touch /b/sub/x",
    ]);
    o.fails();
    assert_eq!(o.stdout, "submount\n", "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert!(!sub.join("x").exists());
    // `bind-recursive=writable`: read-only on top, the submount stays writable.
    let m = format!(
        "type=bind,src={},dst=/b,readonly,bind-recursive=writable",
        host.display()
    );
    let o = d.cli(&[
        "run",
        "--rm",
        "--mount",
        &m,
        "busybox",
        "sh",
        "-c",
        "touch /b/sub/w && echo sub-writable; touch /b/top",
    ]);
    o.fails();
    assert_eq!(o.stdout, "sub-writable\n", "{o}");
    assert!(sub.join("w").exists() && !host.join("top").exists());
    // Read-write, the submount is writable.
    sh(
        d,
        &["-v", &format!("{}:/b", host.display())],
        "touch /b/sub/x",
    );
    assert!(sub.join("x").exists());
}

#[test]
fn concurrent_first_uses_of_a_new_volume_copy_once() {
    let d = dv();
    let vol = unique("race");
    let _v = RmVol(d, vec![vol.clone()]);
    let spec = format!("{vol}:/data");
    let outs: Vec<Out> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let spec = spec.clone();
                s.spawn(move || {
                    d.cli(&[
                        "run",
                        "--rm",
                        "-v",
                        &spec,
                        "volimg",
                        "cat",
                        "/data/seed.txt",
                    ])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for o in &outs {
        o.ok();
        assert_eq!(o.stdout, "seed\n", "{o}");
    }
    let mut names: Vec<String> = std::fs::read_dir(volume_dir(d, &vol).join("_data"))
        .expect("read")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(names, ["link", "seed.txt", "sub"]);
}

/// A tmpfs mounted at `dir` and made shared, unmounted (with whatever is under it) on drop.
struct SharedMount(PathBuf);
impl SharedMount {
    fn new(dir: PathBuf) -> SharedMount {
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |args: &[&str]| {
            let s = std::process::Command::new("mount")
                .args(args)
                .status()
                .unwrap();
            assert!(s.success(), "mount {args:?}");
        };
        sh(&["-t", "tmpfs", "prop", &dir.to_string_lossy()]);
        sh(&["--make-shared", &dir.to_string_lossy()]);
        SharedMount(dir)
    }
}
impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-R", "-l", &self.0.to_string_lossy()])
            .status();
    }
}

fn mount_on_host(dir: &std::path::Path) -> bool {
    let want = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Bind propagation as Docker gives it: `rshared` carries the container's mounts back to the
/// host, `rslave` carries the host's in, the default `rprivate` neither; a shared mode needs a
/// shared source, with Docker's words.
#[test]
fn bind_propagation_modes() {
    let d = d();
    let t = tempfile::tempdir().unwrap();
    let shared = SharedMount::new(t.path().join("shared"));
    let src = shared.0.to_string_lossy().into_owned();
    let plain = t.path().join("plain");
    std::fs::create_dir(&plain).unwrap();

    let o = d.cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/mnt:rshared", plain.display()),
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(o.stderr.contains("is not a shared mount"), "{o}");

    // rshared: a mount made in the container appears on the host.
    d.cli(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &format!("{src}:/mnt:rshared"),
        "busybox",
        "sh",
        "-c",
        "mkdir /mnt/in && mount -t tmpfs t /mnt/in && touch /mnt/in/f",
    ])
    .ok();
    let inner = shared.0.join("in");
    assert!(
        mount_on_host(&inner),
        "the container's mount did not reach the host"
    );
    assert!(inner.join("f").exists());
    let _ = std::process::Command::new("umount").arg(&inner).status();

    // rslave and rprivate: a mount the host makes after the start shows in the first only.
    let mut rm = Rm(d, Vec::new());
    let slave = unique("pslave");
    let private = unique("pprivate");
    rm.add(&slave);
    rm.add(&private);
    run_d(
        d,
        &[
            "--name",
            &slave,
            "-v",
            &format!("{src}:/mnt:rslave"),
            "busybox",
            "sleep",
            "60",
        ],
    );
    run_d(
        d,
        &[
            "--name",
            &private,
            "-v",
            &format!("{src}:/mnt"),
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_eq!(
        fmt(d, &slave, "{{(index .Mounts 0).Propagation}}"),
        "rslave"
    );
    assert_eq!(
        fmt(d, &private, "{{(index .Mounts 0).Propagation}}"),
        "rprivate"
    );
    let late = shared.0.join("late");
    std::fs::create_dir(&late).unwrap();
    let s = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "late", &late.to_string_lossy()])
        .status()
        .unwrap();
    assert!(s.success());
    std::fs::write(late.join("g"), "g").unwrap();
    let ls = |c: &str| d.cli(&["exec", c, "ls", "/mnt/late"]).stdout.clone();
    assert_eq!(ls(&slave), "g\n");
    assert_eq!(ls(&private), "", "an rprivate bind saw a later host mount");
}
