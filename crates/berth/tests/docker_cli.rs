//! The real docker CLI pointed at Berth (`DOCKER_HOST=unix://<berth socket>`). Skipped, with a
//! message, where no `docker` is on PATH (`apt-get install docker.io` gives one; no dockerd needed).

mod common;
use common::*;

/// The docker CLI against the shared daemon, or `None` (test skipped) without one.
fn docker(args: &[&str]) -> Option<Out> {
    let d = d();
    let o = d.docker(args);
    if o.is_none() {
        eprintln!("SKIPPED: no `docker` CLI on PATH (apt-get install docker.io to run this test)");
    }
    o
}

macro_rules! docker_or_skip {
    ($($a:expr),+ $(,)?) => {
        match docker(&[$($a),+]) {
            Some(o) => o,
            None => return,
        }
    };
}

#[test]
fn docker_run_rm_echo() {
    let o = docker_or_skip!("run", "--rm", "busybox", "echo", "hi");
    o.ok();
    assert_eq!(o.stdout, "hi\n", "{o}");
    let o = docker_or_skip!(
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3"
    );
    o.code_is(3);
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
}

#[test]
fn docker_version_negotiates() {
    let o = docker_or_skip!("version", "--format", "{{.Server.APIVersion}}");
    o.ok();
    assert_eq!(o.out(), "1.45", "{o}");
    docker_or_skip!("info").ok();
}

#[test]
fn docker_container_lifecycle() {
    let d = d();
    let x = unique("x");
    let _rm = Rm(d, vec![x.clone()]);
    let o = docker_or_skip!(
        "run",
        "-d",
        "--name",
        &x,
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done"
    );
    o.ok();
    let id = o.out().to_string();
    assert!(is_hex(&id, 64), "{o}");
    assert!(
        wait_until(DEADLINE, || d
            .docker(&["logs", &x])
            .is_some_and(|o| o.stdout.contains("started"))),
        "logs never showed output"
    );

    let ps = docker_or_skip!("ps", "-a");
    ps.ok();
    assert!(ps.lines()[0].starts_with("CONTAINER ID"), "{ps}");
    let row = ps
        .lines()
        .into_iter()
        .find(|l| l.ends_with(x.as_str()))
        .map(|l| l.to_string())
        .unwrap_or_default();
    assert!(
        row.starts_with(&id[..12]) && row.contains("busybox") && row.contains("Up "),
        "{ps}"
    );

    let logs = docker_or_skip!("logs", &x);
    logs.ok();
    assert!(logs.stdout.starts_with("started\n"), "{logs}");

    let stop = docker_or_skip!("stop", &x);
    stop.ok();
    assert_eq!(stop.out(), x);
    assert_eq!(
        docker_or_skip!(
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &x
        )
        .out(),
        "exited 0"
    );

    docker_or_skip!("start", &x).ok();
    assert!(wait_until(DEADLINE, || {
        d.docker(&["inspect", "--format", "{{.State.Status}}", &x])
            .is_some_and(|o| o.out() == "running")
    }));

    let insp = docker_or_skip!("inspect", &x);
    let v = insp.json();
    assert_eq!(v[0]["Id"], json!(id), "{insp}");
    assert_eq!(v[0]["Name"], json!(format!("/{x}")), "{insp}");
    assert_eq!(v[0]["Config"]["Image"], "busybox", "{insp}");
    assert_eq!(v[0]["State"]["Running"], true, "{insp}");

    let rm = docker_or_skip!("rm", "-f", &x);
    rm.ok();
    assert_eq!(rm.out(), x);
    assert!(!docker_or_skip!("inspect", &x).success());
}

#[test]
fn docker_images_save_load_tag_rmi() {
    let d = d();
    let id = d.load_busybox();
    let images = docker_or_skip!("images");
    images.ok();
    assert!(
        images
            .lines()
            .iter()
            .any(|l| l.starts_with("busybox") && l.contains(&id[7..19])),
        "{images}"
    );

    let tag = format!("{}:v1", unique("dtag"));
    docker_or_skip!("tag", "busybox", &tag).ok();
    assert_eq!(
        docker_or_skip!("image", "inspect", "--format", "{{.Id}}", &tag).out(),
        id
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("saved.tar");
    docker_or_skip!("save", "-o", &file.to_string_lossy(), &tag).ok();
    let names = image::tar_entry_names(&std::fs::read(&file).expect("saved tar")).expect("tar");
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");

    let rmi = docker_or_skip!("rmi", &tag);
    rmi.ok();
    assert!(rmi.stdout.contains(&format!("Untagged: {tag}")), "{rmi}");
    assert!(!docker_or_skip!("image", "inspect", &tag).success());

    let load = docker_or_skip!("load", "-i", &file.to_string_lossy());
    load.ok();
    assert!(
        load.stdout.contains(&format!("Loaded image: {tag}")),
        "{load}"
    );
    assert_eq!(
        docker_or_skip!("image", "inspect", "--format", "{{.Id}}", &tag).out(),
        id
    );

    // A tarball we built, in the legacy layout, through stdin.
    let tag2 = format!("{}:legacy", unique("dload"));
    let tar = image::busybox_image()
        .expect("busybox")
        .retag(&[&tag2])
        .save_tar(SaveFormat::Legacy);
    let Some(o) = d.docker_in(&["load"], Some(&tar)) else {
        return;
    };
    o.ok();
    assert!(o.stdout.contains(&tag2), "{o}");
    docker_or_skip!("rmi", &tag, &tag2).ok();
}

/// The acceptance list, command for command.
#[test]
fn docker_acceptance_sequence() {
    let d = d();
    let x = unique("x");
    let _rm = Rm(d, vec![x.clone()]);
    let o = docker_or_skip!("run", "--rm", "busybox", "echo", "hi");
    assert_eq!(o.stdout, "hi\n", "{o}");
    docker_or_skip!("run", "-d", "--name", &x, "busybox", "sleep", "100").ok();
    assert!(docker_or_skip!("ps", "-a").stdout.contains(&x));
    docker_or_skip!("logs", &x).ok();
    // sleep ignores SIGTERM as pid 1: stop waits its 10 s, then SIGKILL.
    docker_or_skip!("stop", &x).ok();
    assert_eq!(
        docker_or_skip!("inspect", "--format", "{{.State.ExitCode}}", &x).out(),
        "137"
    );
    docker_or_skip!("start", &x).ok();
    let v = docker_or_skip!("inspect", &x).json();
    assert_eq!(v[0]["State"]["Status"], "running", "{v}");
    docker_or_skip!("rm", "-f", &x).ok();
    docker_or_skip!("images").ok();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bb.tar");
    let tag = format!("{}:acc", unique("acc"));
    docker_or_skip!("tag", "busybox", &tag).ok();
    docker_or_skip!("save", "-o", &file.to_string_lossy(), &tag).ok();
    docker_or_skip!("rmi", &tag).ok();
    docker_or_skip!("load", "-i", &file.to_string_lossy()).ok();
    docker_or_skip!("rmi", &tag).ok();
}

#[test]
fn docker_volume_create_ls_inspect_rm_and_run_v() {
    let d = d();
    let vol = unique("dv");
    let o = docker_or_skip!("volume", "create", "--label", "owner=test", &vol);
    o.ok();
    assert_eq!(o.out(), vol, "{o}");
    let ls = docker_or_skip!("volume", "ls");
    ls.ok();
    assert!(ls.lines()[0].starts_with("DRIVER"), "{ls}");
    assert!(ls.lines()[0].contains("VOLUME NAME"), "{ls}");
    assert!(
        ls.lines()
            .iter()
            .any(|l| l.starts_with("local") && l.ends_with(vol.as_str())),
        "{ls}"
    );
    let q = docker_or_skip!("volume", "ls", "-q", "--filter", "label=owner=test");
    assert!(q.lines().contains(&vol.as_str()), "{q}");
    let insp = docker_or_skip!("volume", "inspect", &vol);
    insp.ok();
    let v = insp.json();
    assert_eq!(v[0]["Name"], json!(vol), "{insp}");
    assert_eq!(v[0]["Labels"]["owner"], "test", "{insp}");

    let spec = format!("{vol}:/v");
    docker_or_skip!(
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo kept > /v/f"
    )
    .ok();
    let o = docker_or_skip!("run", "--rm", "-v", &spec, "busybox", "cat", "/v/f");
    o.ok();
    assert_eq!(o.stdout, "kept\n", "{o}");
    let o = docker_or_skip!(
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/v:ro"),
        "busybox",
        "touch",
        "/v/g"
    );
    o.fails();
    assert!(o.stderr.contains("Read-only file system"), "{o}");

    // In use: docker prints the daemon's conflict.
    let c = unique("dvuser");
    let _rm = Rm(d, vec![c.clone()]);
    docker_or_skip!("create", "--name", &c, "-v", &spec, "busybox", "true").ok();
    let o = docker_or_skip!("volume", "rm", &vol);
    o.fails();
    assert!(o.stderr.contains("volume is in use"), "{o}");
    docker_or_skip!("rm", &c).ok();
    let o = docker_or_skip!("volume", "rm", &vol);
    o.ok();
    assert_eq!(o.out(), vol, "{o}");
    let o = docker_or_skip!("volume", "inspect", &vol);
    o.fails();
    assert!(o.stderr.contains("no such volume"), "{o}");
}
