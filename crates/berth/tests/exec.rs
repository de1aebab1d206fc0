//! `exec`: flags, exit codes, the exec API's shapes and errors, security profile, and exec
//! into a container after a daemon restart.

mod common;
use common::*;

fn post(d: &Daemon, path: &str, body: Value) -> berth_testkit::http::Response {
    let b = body.to_string();
    d.api_with(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(b.as_bytes()),
    )
    .expect("request")
}

fn get_json(d: &Daemon, path: &str) -> Value {
    d.api("GET", path).json().expect("json")
}

fn running(d: &Daemon, rm: &mut Rm, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "300"]);
    let out = d.cli(&args);
    assert!(out.success(), "run: {}", out.stderr);
    rm.add(name);
}

#[test]
fn exec_runs_in_the_container_with_its_exit_code() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("ex");
    running(d, &mut rm, &name, &["-e", "FROMRUN=1", "-w", "/tmp"]);
    let out = d.cli(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");

    // The container's environment, cwd and hostname; the exec's overrides.
    let out = d.cli(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo $FROMRUN $(pwd) $(hostname)",
    ]);
    assert!(out.success(), "{out:?}");
    let short = &fmt(d, &name, "{{.Id}}")[..12];
    assert_eq!(out.stdout.trim(), format!("1 /tmp {short}"));
    let out = d.cli(&[
        "exec",
        "-e",
        "FROMRUN=2",
        "-e",
        "NEW=x",
        "-w",
        "/etc",
        &name,
        "sh",
        "-c",
        "echo $FROMRUN $NEW $(pwd)",
    ]);
    assert_eq!(out.stdout.trim(), "2 x /etc", "{out:?}");

    // Same pid namespace as init: pid 1 is the container's sleep.
    let out = d.cli(&["exec", &name, "cat", "/proc/1/cmdline"]);
    assert_eq!(out.stdout, "sleep\u{0}300\u{0}");
    // In the container's cgroup.
    let cg_init =
        std::fs::read_to_string(format!("/proc/{}/cgroup", fmt(d, &name, "{{.State.Pid}}")))
            .expect("init cgroup");
    let out = d.cli(&["exec", &name, "cat", "/proc/self/cgroup"]);
    let berth_line = |s: &str| s.lines().filter(|l| l.contains("/berth/")).count();
    assert!(berth_line(&cg_init) > 0);
    assert_eq!(
        berth_line(&out.stdout),
        berth_line(&cg_init),
        "{}",
        out.stdout
    );
}

#[test]
fn exec_user_stdin_tty_and_detach() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("exu");
    running(d, &mut rm, &name, &[]);
    let out = d.cli(&["exec", "-u", "nobody", &name, "id", "-u"]);
    assert_eq!(out.stdout.trim(), "65534", "{out:?}");
    let out = d.cli(&[
        "exec",
        "-u",
        "1234:5678",
        &name,
        "sh",
        "-c",
        "echo $(id -u):$(id -g)",
    ]);
    assert_eq!(out.stdout.trim(), "1234:5678", "{out:?}");
    let out = d.cli(&["exec", "-u", "ghost", &name, "true"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("unable to find user ghost"),
        "{}",
        out.stderr
    );

    // -i: stdin reaches the process and EOF closes it.
    let out = d.cli_in(
        &["exec", "-i", &name, "sh", "-c", "cat; echo done"],
        b"hello\n",
    );
    assert_eq!(out.stdout, "hello\ndone\n", "{out:?}");
    // Without -i the process reads EOF at once.
    let out = d.cli_in(&["exec", &name, "sh", "-c", "cat; echo done"], b"hello\n");
    assert_eq!(out.stdout, "done\n");

    // -t without a terminal on our side: a pty inside, output as one stream.
    let out = d.cli(&["exec", "-t", &name, "sh", "-c", "tty; echo e >&2"]);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.starts_with("/dev/pts/"), "{out:?}");
    assert!(
        out.stdout.contains("e\r\n"),
        "stderr goes to the tty: {out:?}"
    );

    // -d: runs without a client.
    let out = d.cli(&[
        "exec",
        "-d",
        &name,
        "sh",
        "-c",
        "sleep 0.2; echo bg > /tmp/bg",
    ]);
    assert!(out.success() && out.stdout.is_empty(), "{out:?}");
    assert!(wait_until(DEADLINE, || d
        .cli(&["exec", &name, "cat", "/tmp/bg"])
        .stdout
        == "bg\n"));
}

#[test]
fn exec_not_found_and_not_executable() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("exn");
    running(d, &mut rm, &name, &[]);
    // Docker's exec exit code for a process that could not start is 126, found or not.
    let out = d.cli(&["exec", &name, "nosuchcmd"]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(
        out.stderr
            .contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        out.stderr
    );
    let out = d.cli(&["exec", &name, "/etc/passwd"]);
    assert_eq!(out.code, 126, "{out:?}");
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);

    // Stopped container: 409 in Docker's words.
    let stopped = unique("exs");
    assert!(d
        .cli(&["create", "--name", &stopped, "busybox", "true"])
        .success());
    rm.add(&stopped);
    let out = d.cli(&["exec", &stopped, "true"]);
    assert!(!out.success());
    assert!(out.stderr.contains("is not running"), "{}", out.stderr);
    let out = d.cli(&["exec", "nosuchcontainer", "true"]);
    assert!(
        out.stderr.contains("No such container: nosuchcontainer"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_api_shapes() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("exa");
    running(d, &mut rm, &name, &[]);
    let r = post(
        d,
        &format!("/containers/{name}/exec"),
        json!({"Cmd": ["sh", "-c", "sleep 1; exit 4"], "AttachStdout": true, "User": "nobody"}),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.json().expect("json")["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    assert!(is_hex(&id, 64), "{id}");
    let j = get_json(d, &format!("/exec/{id}/json"));
    assert_eq!(j["Running"], false);
    assert_eq!(j["ExitCode"], Value::Null);
    assert_eq!(j["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(j["ProcessConfig"]["user"], "nobody");
    assert_eq!(j["OpenStdout"], true);
    assert_eq!(j["OpenStdin"], false);
    assert!(fmt(d, &name, "{{json .ExecIDs}}").contains(&id));

    let r = post(d, &format!("/exec/{id}/start"), json!({"Detach": true}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = get_json(d, &format!("/exec/{id}/json"));
    assert_eq!(j["Running"], true);
    let pid = j["Pid"].as_i64().expect("Pid");
    assert!(pid > 0);
    // A second start is refused.
    let r = post(d, &format!("/exec/{id}/start"), json!({"Detach": true}));
    assert_eq!(r.status, 409);
    // Resize of a non-tty exec.
    let r = d.api("POST", &format!("/exec/{id}/resize?h=10&w=10"));
    assert_eq!(r.status, 409);
    assert!(wait_until(DEADLINE, || {
        let j = get_json(d, &format!("/exec/{id}/json"));
        j["Running"] == false && j["ExitCode"] == 4
    }));

    // Errors.
    assert_eq!(d.api("GET", "/exec/nosuch/json").status, 404);
    assert_eq!(d.api("POST", "/exec/nosuch/start").status, 404);
    let r = post(d, &format!("/containers/{name}/exec"), json!({"Cmd": []}));
    assert_eq!(r.status, 400);
    let r = post(
        d,
        &format!("/containers/{name}/exec"),
        json!({"Cmd": ["true"], "DetachKeys": "ctrl-xx"}),
    );
    assert_eq!(r.status, 400);
    let r = post(d, "/containers/nosuch/exec", json!({"Cmd": ["true"]}));
    assert_eq!(r.status, 404);

    // A start without Upgrade streams the output as the body.
    let r = post(
        d,
        &format!("/containers/{name}/exec"),
        json!({"Cmd": ["echo", "plain"], "AttachStdout": true, "Tty": true}),
    );
    let id = r.json().expect("json")["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let r = post(d, &format!("/exec/{id}/start"), json!({"Tty": true}));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "plain\r\n");
    // Without Tty in the start, Docker frames the stream even for a TTY exec.
    let r = post(
        d,
        &format!("/containers/{name}/exec"),
        json!({"Cmd": ["echo", "framed"], "AttachStdout": true, "Tty": true}),
    );
    let id = r.json().expect("json")["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let r = post(d, &format!("/exec/{id}/start"), json!({}));
    assert_eq!(r.body, b"\x01\x00\x00\x00\x00\x00\x00\x08framed\r\n");
    let j = get_json(d, &format!("/exec/{id}/json"));
    assert_eq!(j["ExitCode"], 0);
}

#[test]
fn exec_keeps_the_containers_security_profile() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("exsec");
    running(d, &mut rm, &name, &[]);
    let caps = |args: &[&str]| {
        let out = d.cli(args);
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let init = caps(&["exec", &name, "cat", "/proc/1/status"]);
    let exec = caps(&["exec", &name, "cat", "/proc/self/status"]);
    assert_eq!(init, exec, "exec has the container's capabilities");
    assert_eq!(init, "00000000a80425fb", "Docker's 14 default capabilities");
    let seccomp = |args: &[&str]| {
        d.cli(args)
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(seccomp(&["exec", &name, "cat", "/proc/self/status"]), "2");
    // Docker's profile refuses unshare without CAP_SYS_ADMIN.
    let out = d.cli(&["exec", &name, "unshare", "-U", "true"]);
    assert!(
        !out.success(),
        "unshare worked under the default profile: {out:?}"
    );

    let privileged = caps(&["exec", "--privileged", &name, "cat", "/proc/self/status"]);
    assert_ne!(privileged, init);
    assert_eq!(
        seccomp(&["exec", "--privileged", &name, "cat", "/proc/self/status"]),
        "0"
    );
}

#[test]
fn exec_tty_resize_and_console_size() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("ext");
    running(d, &mut rm, &name, &[]);
    let r = post(
        d,
        &format!("/containers/{name}/exec"),
        json!({"Cmd": ["sh", "-c", "stty size; sleep 1; stty size"], "AttachStdout": true, "Tty": true, "ConsoleSize": [33, 111]}),
    );
    let id = r.json().expect("json")["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let path = format!("/exec/{id}/start");
    let t = std::thread::spawn(move || post(d, &path, json!({"Tty": true})));
    assert!(wait_until(DEADLINE, || {
        get_json(d, &format!("/exec/{id}/json"))["Running"] == true
    }));
    let r = d.api("POST", &format!("/exec/{id}/resize?h=44&w=122"));
    assert_eq!(r.status, 200);
    let r = t.join().expect("start thread");
    assert_eq!(r.text(), "33 111\r\n44 122\r\n");
}

#[test]
fn exec_after_daemon_restart() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let name = unique("exr");
    assert!(d
        .cli(&["run", "-d", "--name", &name, "busybox", "sleep", "300"])
        .success());
    // A long exec running across the restart.
    let out = d.cli(&[
        "exec",
        "-d",
        &name,
        "sh",
        "-c",
        "sleep 2; echo survived > /tmp/x",
    ]);
    assert!(out.success(), "{out:?}");
    d.kill9();
    d.restart();
    let out = d.cli(&["exec", &name, "echo", "after"]);
    assert_eq!(out.stdout, "after\n", "{out:?}");
    assert!(wait_until(DEADLINE, || d
        .cli(&["exec", &name, "cat", "/tmp/x"])
        .stdout
        == "survived\n"));
    let _ = d.cli(&["rm", "-f", &name]);
}
