//! `cp` and the archive endpoints: both directions, running and stopped containers, the stat
//! header, Docker's errors, and symlinks in the container that point outside it.

mod common;
use common::*;

fn stat_header(r: &berth_testkit::http::Response) -> Value {
    use base64::Engine as _;
    let h = r
        .header("X-Docker-Container-Path-Stat")
        .expect("stat header");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h)
        .expect("base64");
    serde_json::from_slice(&raw).expect("json")
}

#[test]
fn cp_both_ways_with_a_running_container() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("cp");
    assert!(d
        .cli(&["run", "-d", "--name", &name, "busybox", "sh", "-c",
            "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && ln -s a /data/l && sleep 300"])
        .success());
    rm.add(&name);
    assert!(wait_until(DEADLINE, || d
        .cli(&["exec", &name, "test", "-L", "/data/l"])
        .success()));
    let tmp = tempfile::tempdir().expect("tmp");
    let host = tmp.path();

    // A file to a new name, a directory into an existing directory, contents with /.
    let out = d.cli(&[
        "cp",
        &format!("{name}:/data/a"),
        &host.join("a.txt").display().to_string(),
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("a.txt")).expect("a"),
        "one\n"
    );
    let out = d.cli(&["cp", &format!("{name}:/data"), &host.display().to_string()]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("data/sub/b")).expect("b"),
        "two\n"
    );
    assert_eq!(
        std::fs::read_link(host.join("data/l")).expect("link"),
        std::path::PathBuf::from("a"),
        "a symlink is copied as a symlink"
    );
    let out = d.cli(&[
        "cp",
        &format!("{name}:/data/."),
        &host.join("flat").display().to_string(),
    ]);
    assert!(out.success(), "{out:?}");
    assert!(host.join("flat/sub/b").exists() && host.join("flat/a").exists());

    // Host to container: a file into a directory, a directory to a new name.
    std::fs::write(host.join("up.txt"), "up\n").expect("write");
    std::fs::create_dir_all(host.join("tree/x")).expect("mkdir");
    std::fs::write(host.join("tree/x/y"), "deep\n").expect("write");
    let out = d.cli(&[
        "cp",
        &host.join("up.txt").display().to_string(),
        &format!("{name}:/tmp"),
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(d.cli(&["exec", &name, "cat", "/tmp/up.txt"]).stdout, "up\n");
    let out = d.cli(&[
        "cp",
        &host.join("tree").display().to_string(),
        &format!("{name}:/newtree"),
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        d.cli(&["exec", &name, "cat", "/newtree/x/y"]).stdout,
        "deep\n"
    );
    // Ownership: root without -a.
    assert_eq!(
        d.cli(&["exec", &name, "stat", "-c", "%u", "/tmp/up.txt"])
            .stdout
            .trim(),
        "0"
    );

    // Errors in Docker's words.
    let out = d.cli(&[
        "cp",
        &format!("{name}:/nosuch"),
        &host.display().to_string(),
    ]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("Could not find the file /nosuch in container"),
        "{}",
        out.stderr
    );
    let out = d.cli(&["cp", "nosuchctr:/etc", &host.display().to_string()]);
    assert!(
        out.stderr.contains("No such container: nosuchctr"),
        "{}",
        out.stderr
    );
}

#[test]
fn archive_api_stat_and_put_into_a_stopped_container() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("cpa");
    assert!(d
        .cli(&[
            "create",
            "--name",
            &name,
            "busybox",
            "cat",
            "/etc/new/hello"
        ])
        .success());
    rm.add(&name);
    let r = d.api(
        "HEAD",
        &format!("/containers/{name}/archive?path=/etc/passwd"),
    );
    assert_eq!(r.status, 200);
    let st = stat_header(&r);
    assert_eq!(st["name"], "passwd");
    assert_eq!(st["mode"], 0o644);
    assert!(st["size"].as_i64().unwrap_or(0) > 0);
    let r = d.api("HEAD", &format!("/containers/{name}/archive?path=/etc"));
    let st = stat_header(&r);
    assert_eq!(
        st["mode"].as_u64().unwrap_or(0) & (1 << 31),
        1 << 31,
        "dir bit"
    );
    assert_eq!(
        d.api("HEAD", &format!("/containers/{name}/archive?path=/nope"))
            .status,
        404
    );
    assert_eq!(
        d.api("GET", &format!("/containers/{name}/archive")).status,
        400
    );

    // PUT a tar into the stopped container, then run it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "new/hello", &b"hello\n"[..])
        .expect("append");
    let data = b.into_inner().expect("tar");
    let r = d
        .api_with(
            "PUT",
            &format!("/containers/{name}/archive?path=/etc"),
            &[("Content-Type", "application/x-tar")],
            Some(&data),
        )
        .expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = d.cli(&["start", "-a", &name]);
    assert_eq!(out.stdout, "hello\n", "{out:?}");

    // The destination must be a directory.
    let r = d
        .api_with(
            "PUT",
            &format!("/containers/{name}/archive?path=/etc/passwd"),
            &[],
            Some(&data),
        )
        .expect("put");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn cp_never_leaves_the_rootfs_through_symlinks() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("cps");
    let outside = tempfile::tempdir().expect("tmp");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "host secret\n").expect("write");
    let od = outside.path().display().to_string();
    // Links that would lead out if followed on the host: absolute and relative.
    assert!(d
        .cli(&["run", "-d", "--name", &name, "busybox", "sh", "-c",
            &format!("ln -s {od} /abs && ln -s ../../../../../../../../..{od} /rel && echo in > /inside && sleep 300")])
        .success());
    rm.add(&name);
    assert!(wait_until(DEADLINE, || d
        .cli(&["exec", &name, "test", "-e", "/inside"])
        .success()));
    let r = d.api(
        "GET",
        &format!("/containers/{name}/archive?path=/abs/secret"),
    );
    assert_eq!(r.status, 404, "read the host through an absolute link");
    let r = d.api(
        "GET",
        &format!("/containers/{name}/archive?path=/rel/secret"),
    );
    assert_eq!(r.status, 404, "read the host through a relative link");

    // Writing through the links lands inside the container (or fails), never on the host.
    let host = tempfile::tempdir().expect("tmp");
    std::fs::write(host.path().join("pwn"), "x\n").expect("write");
    let src = host.path().join("pwn").display().to_string();
    let _ = d.cli(&["cp", &src, &format!("{name}:/abs/")]);
    let _ = d.cli(&["cp", &src, &format!("{name}:/rel/pwn")]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "abs/pwn2", &b"x\n"[..])
        .expect("append");
    let data = b.into_inner().expect("tar");
    let r = d
        .api_with(
            "PUT",
            &format!("/containers/{name}/archive?path=/"),
            &[],
            Some(&data),
        )
        .expect("put");
    assert_ne!(r.status, 200, "extracted through a symlink");
    let left: Vec<_> = std::fs::read_dir(outside.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("secret")],
        "host dir was written"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        "host secret\n"
    );
}

#[test]
fn cp_sees_the_volumes_of_a_stopped_container() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("cpv");
    let out = d.cli(&[
        "run",
        "--name",
        &name,
        "-v",
        "/vol1",
        "busybox",
        "sh",
        "-c",
        "echo -n in-volume > /vol1/data.txt",
    ]);
    assert!(out.success(), "{out:?}");
    rm.add(&name);
    let r = d.api(
        "HEAD",
        &format!("/containers/{name}/archive?path=/vol1/data.txt"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(stat_header(&r)["size"], 9);
    let tmp = tempfile::tempdir().expect("tmp");
    let out = d.cli(&[
        "cp",
        &format!("{name}:/vol1/data.txt"),
        &tmp.path().display().to_string(),
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data.txt")).expect("data"),
        "in-volume"
    );
    // Into the volume of the stopped container, then seen by a new run with the same volume.
    std::fs::write(tmp.path().join("back.txt"), "back").expect("write");
    let out = d.cli(&[
        "cp",
        &tmp.path().join("back.txt").display().to_string(),
        &format!("{name}:/vol1/"),
    ]);
    assert!(out.success(), "{out:?}");
    let vol = fmt(d, &name, "{{(index .Mounts 0).Name}}");
    let out = d.cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/v"),
        "busybox",
        "cat",
        "/v/back.txt",
    ]);
    assert_eq!(out.stdout, "back", "{out:?}");
    // The daemon's own mount table is untouched.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&vol),
        "volume mount leaked into the host namespace"
    );
}

/// `PUT /containers/{id}/archive` takes a tar compressed with gzip, bzip2 or xz (the spec's
/// list), and a corrupt one is a 400 that names no path of the daemon's.
#[test]
fn archive_put_accepts_compressed_tars() {
    let d = d();
    let name = unique("cpz");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(d, &["--name", &name, "busybox", "sleep", "300"]);
    for tool in ["gzip", "bzip2", "xz"] {
        let mut b = tar::Builder::new(Vec::new());
        let body = format!("via {tool}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("z/{tool}.txt"), body.as_bytes())
            .expect("append");
        let plain = b.into_inner().expect("tar");
        let mut c = std::process::Command::new(tool);
        c.arg("-c");
        let out = berth_testkit::run_with_timeout(c, Some(plain), Duration::from_secs(30));
        assert!(out.success(), "{tool}: {out}");
        let packed = out.stdout_bytes.clone();
        let r = d
            .api_with(
                "PUT",
                &format!("/containers/{name}/archive?path=/tmp"),
                &[("Content-Type", "application/x-tar")],
                Some(&packed),
            )
            .expect("put");
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
        let o = d.cli(&["exec", &name, "cat", &format!("/tmp/z/{tool}.txt")]);
        assert_eq!(o.ok().out(), body.trim(), "{tool}");
        // Cut short: the client's data is at fault.
        let r = d
            .api_with(
                "PUT",
                &format!("/containers/{name}/archive?path=/tmp"),
                &[("Content-Type", "application/x-tar")],
                Some(&packed[..packed.len() / 2]),
            )
            .expect("put");
        assert_eq!(r.status, 400, "{tool}: {}", r.text());
        assert!(
            r.text().contains(&format!("corrupt {tool} data")),
            "{}",
            r.text()
        );
        assert!(
            !r.text().contains(&d.root().display().to_string()),
            "{}",
            r.text()
        );
    }
}
