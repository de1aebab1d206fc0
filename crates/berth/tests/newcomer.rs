//! A newcomer's first minutes: `berth --version`, completions and man pages generated from the
//! CLI's grammar, the warning for a `run` option after the image, the daemon's configuration
//! file (daemon.json) and systemd socket activation.

mod common;
use common::*;

use berth_testkit::{run_with_timeout, Startup};
use std::process::{Command, Stdio};

fn berth(args: &[&str]) -> Out {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("BERTH_HOST")
        .env_remove("DOCKER_HOST");
    run_with_timeout(c, None, Duration::from_secs(30))
}

#[test]
fn version_flag_names_version_commit_and_api() {
    for flag in ["--version", "-v"] {
        let o = berth(&[flag]);
        o.ok();
        let line = o.stdout.trim();
        let rest = line
            .strip_prefix(concat!("Berth version ", env!("CARGO_PKG_VERSION"), ", "))
            .unwrap_or_else(|| panic!("{line:?}"));
        let rest = match rest.strip_prefix("build ") {
            Some(r) => {
                let (commit, r) = r.split_once(", ").expect("build field");
                assert!(
                    commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
                    "{line:?}"
                );
                r
            }
            None => rest,
        };
        assert_eq!(rest, "API version 1.45", "{line:?}");
    }
}

/// The daemon's `/version` names the same commit as `berth --version` (Docker's GitCommit).
#[test]
fn server_version_names_the_build_commit() {
    let line = berth(&["--version"]).stdout.clone();
    let commit = line
        .split("build ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("unknown")
        .to_string();
    let d = Daemon::start(BIN);
    let v = d.cli(&["version", "--format", "{{.Server.GitCommit}}"]);
    v.ok();
    assert_eq!(v.out(), commit, "{line}");
}

#[test]
fn completions_for_each_shell_name_real_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _berth"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let o = berth(&["completion", shell]);
        o.ok();
        assert!(o.stdout.contains(marker), "{shell}: no {marker:?}");
        for word in [
            "run",
            "ps",
            "network",
            "daemon",
            "registry",
            "completion",
            "publish",
        ] {
            assert!(o.stdout.contains(word), "{shell} completion lacks {word:?}");
        }
        // The hidden man-page command is not offered.
        assert!(!o.stdout.contains("Write the man pages"), "{shell}");
    }
    let o = berth(&["completion", "tcsh"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("invalid value 'tcsh'"), "{o}");
}

#[test]
fn man_pages_cover_every_visible_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    let o = berth(&["man", "--dir", out.to_str().expect("utf-8")]);
    o.ok();
    let listed = o.stdout.lines().count();
    let files = std::fs::read_dir(&out).expect("man dir").count();
    assert_eq!(listed, files, "{o}");
    assert!(files > 50, "only {files} pages");
    for page in [
        "berth.1",
        "berth-run.1",
        "berth-daemon.1",
        "berth-network-create.1",
        "berth-registry-serve.1",
        "berth-completion.1",
    ] {
        assert!(out.join(page).exists(), "{page} missing");
    }
    assert!(!out.join("berth-man.1").exists());
    let run = std::fs::read_to_string(out.join("berth-run.1")).expect("page");
    assert!(run.contains(".TH berth-run 1"), "{run}");
    assert!(run.contains("publish") && run.contains("detach"), "{run}");
    let top = std::fs::read_to_string(out.join("berth.1")).expect("page");
    assert!(
        top.contains("berth\\-run(1)") || top.contains("run"),
        "{top}"
    );
}

#[test]
fn an_option_after_the_image_goes_to_the_command_with_a_warning() {
    let d = d();
    let name = unique("slip");
    let _rm = Rm(d, vec![name.clone()]);
    // The tutorial's slip: `-rm` is echo's argument, and the container is not removed.
    let o = d.cli(&["run", "--name", &name, "busybox", "echo", "-rm"]);
    o.ok();
    assert_eq!(o.stdout.trim(), "-rm", "{o}");
    assert!(
        o.stderr.contains(
            "warning: \"-rm\" after the image name is passed to the container's command; \
             run options go before the image name: berth run --rm busybox"
        ),
        "{o}"
    );
    assert_eq!(d.fmt(&name, "{{.State.Status}}"), "exited");
    // --name=x and a long option with two dashes too.
    let o = d.cli(&["create", "busybox", "echo", "--name=web"]);
    o.ok();
    let _rm2 = Rm(d, vec![o.stdout.trim().to_string()]);
    assert!(
        o.stderr
            .contains("create options go before the image name: berth create --name=web busybox"),
        "{o}"
    );
    // Ordinary container commands and words after `--` are not warned about.
    for args in [
        &["run", "--rm", "busybox", "sh", "-c", "echo ok"][..],
        &["run", "--rm", "busybox", "ls", "-d", "/"][..],
        &["run", "--rm", "busybox", "echo", "--", "--rm"][..],
    ] {
        let o = d.cli(args);
        o.ok();
        assert!(!o.stderr.contains("warning"), "{o}");
    }
}

#[test]
fn daemon_json_settings_take_effect() {
    // A registry that the file names as Docker Hub's mirror.
    let regdir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut reg = Command::new(BIN)
        .args(["registry", "serve", "--addr", &addr, "--storage"])
        .arg(regdir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("registry");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reg = Kill(&mut reg);
    assert!(wait_until(DEADLINE, || std::net::TcpStream::connect(&addr).is_ok()));

    let mut extra = serde_json::Map::new();
    extra.insert("registry-mirrors".into(), json!([format!("http://{addr}")]));
    extra.insert(
        "insecure-registries".into(),
        json!(["registry.invalid:5000"]),
    );
    extra.insert(
        "log-opts".into(),
        json!({"max-size": "2k", "max-file": "2"}),
    );
    let d = Daemon::try_start_with(BIN, Startup::ConfigFile(extra)).expect("daemon");
    // hosts, data-root, exec-root, bridge, bip and pools all came from the file.
    assert!(d.ping());
    d.load_busybox();
    assert!(d.data_root().join("image").is_dir());
    let info = d.api("GET", "/info").json().expect("info");
    assert_eq!(
        info["DockerRootDir"],
        d.data_root().display().to_string(),
        "{info}"
    );

    // log-opts: the default for a container that sets none, merged under its own.
    let name = unique("logs");
    let _rm = Rm(&d, vec![name.clone()]);
    d.cli(&[
        "run", "--name", &name, "--log-opt", "max-size=3k", "busybox", "sh", "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done",
    ])
    .ok();
    let cfg = d.inspect(&name).expect("inspect")["HostConfig"]["LogConfig"]["Config"].clone();
    assert_eq!(cfg, json!({"max-size": "3k", "max-file": "2"}));
    let id = d.fmt(&name, "{{.Id}}");
    let dir = d.data_root().join("containers").join(&id);
    let logs: Vec<String> = std::fs::read_dir(&dir)
        .expect("container dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    // max-file 2: the live file and one rotated one, each under max-size.
    assert_eq!(logs.len(), 2, "{logs:?}");
    let other = unique("logs2");
    d.cli(&["create", "--name", &other, "busybox", "true"]).ok();
    let _rm2 = Rm(&d, vec![other.clone()]);
    let cfg = d.inspect(&other).expect("inspect")["HostConfig"]["LogConfig"]["Config"].clone();
    assert_eq!(cfg, json!({"max-size": "2k", "max-file": "2"}));

    // registry-mirrors: a Docker Hub name is pulled from the mirror.
    let tag = unique("m");
    let mirrored = format!("{addr}/library/mirrored:{tag}");
    d.cli(&["tag", "busybox", &mirrored]).ok();
    d.cli(&["push", &mirrored]).ok();
    d.cli(&["rmi", &mirrored]).ok();
    let o = d.cli(&["pull", &format!("mirrored:{tag}")]);
    o.ok();
    assert!(
        o.stdout
            .contains(&format!("Downloaded newer image for mirrored:{tag}")),
        "{o}"
    );
    let _ = d.cli(&["rmi", &format!("mirrored:{tag}")]);
}

#[test]
fn daemon_json_mistakes_are_refused_with_dockerds_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("daemon.json");
    let sock = format!("unix://{}/never.sock", dir.path().display());
    let start = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(["daemon", "--config-file"])
            .arg(&file)
            .args(extra)
            .env_remove("LISTEN_FDS");
        run_with_timeout(c, None, Duration::from_secs(20))
    };
    std::fs::write(
        &file,
        r#"{"data-root": "/nonexistent/a", "storage-driver": "overlay2", "dns": []}"#,
    )
    .expect("write");
    let o = start(&["-H", &sock]);
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stderr.contains(&format!(
            "unable to configure the Berth daemon with file {}: the following directives don't match any configuration option: dns, storage-driver",
            file.display()
        )),
        "{o}"
    );
    std::fs::write(
        &file,
        format!(r#"{{"data-root": "/nonexistent/a", "hosts": ["{sock}"]}}"#),
    )
    .expect("write");
    let o = start(&[
        "--data-root",
        "/nonexistent/b",
        "-H",
        "unix:///nonexistent/c.sock",
    ]);
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stderr.contains(&format!(
            "the following directives are specified both as a flag and in the configuration file: \
             hosts: (from flag: [unix:///nonexistent/c.sock], from file: [{sock}]), \
             data-root: (from flag: /nonexistent/b, from file: /nonexistent/a)"
        )),
        "{o}"
    );
    // The same settings, each given once, are fine.
    let o = start(&["--validate", "--bridge", "none"]);
    assert_eq!(o.stdout.trim(), "configuration OK", "{o}");
    // A file named on the command line must exist.
    let mut c = Command::new(BIN);
    c.args([
        "daemon",
        "--validate",
        "--config-file",
        "/nonexistent/daemon.json",
    ]);
    let o = run_with_timeout(c, None, Duration::from_secs(20));
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stderr.contains("open /nonexistent/daemon.json"), "{o}");
    std::fs::write(&file, r#"{"log-opts": {"max-file": "0"}}"#).expect("write");
    let o = start(&["--validate"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("max-file cannot be less than 1"), "{o}");
}

#[test]
fn socket_activation_serves_the_inherited_socket() {
    let d = Daemon::try_start_with(BIN, Startup::SocketActivated).expect("daemon");
    d.load_busybox();
    let o = d.cli(&["run", "--rm", "busybox", "echo", "activated"]);
    o.ok();
    assert_eq!(o.stdout.trim(), "activated");
    // The socket is the socket unit's: a stopped daemon leaves it, and the next one serves it.
    d.stop(Duration::from_secs(20)).expect("daemon stopped");
    assert!(d.socket().exists(), "the activated socket was unlinked");
    d.restart();
    d.cli(&["version"]).ok();
}
