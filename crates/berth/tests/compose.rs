//! docker-compose 1.29 (Debian's `docker-compose`, the Python one) driven against Berth, for the
//! workflows its users depend on: recreate, `entrypoint: ""`, `up --no-start --remove-orphans`,
//! `events`, `create` before the project's network exists, and builds. Skipped, with one line,
//! where `docker-compose` is not installed.

mod common;
use common::*;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const TIMEOUT: Duration = Duration::from_secs(180);

/// A compose project of its own: a directory with a `docker-compose.yml`, a project name.
struct Project {
    d: &'static Daemon,
    dir: PathBuf,
    name: String,
    bin: PathBuf,
}

impl Project {
    /// None (and one line saying why) where docker-compose is not installed.
    fn new(prefix: &str, yml: &str) -> Option<Project> {
        let Some(bin) = berth_testkit::which("docker-compose") else {
            eprintln!("SKIPPED: no `docker-compose` on PATH (apt-get install docker-compose)");
            return None;
        };
        let d = d();
        let name = unique(prefix).replace('-', "");
        let dir = d.root().join(format!("compose-{name}"));
        std::fs::create_dir_all(&dir).expect("project dir");
        let p = Project { d, dir, name, bin };
        p.write(yml);
        Some(p)
    }

    fn write(&self, yml: &str) {
        std::fs::write(self.dir.join("docker-compose.yml"), yml).expect("write yml");
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .arg("-p")
            .arg(&self.name)
            .args(args)
            .env("DOCKER_HOST", self.d.host())
            .env("DOCKER_CONFIG", self.dir.join(".docker"))
            // Compose's own builder (docker-py's POST /build), not the docker CLI's BuildKit.
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .env_remove("COMPOSE_API_VERSION")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_CONTEXT");
        c
    }

    /// Runs `docker-compose -p <name> args`.
    #[track_caller]
    fn run(&self, args: &[&str]) -> Out {
        berth_testkit::run_with_timeout(self.cmd(args), None, TIMEOUT)
    }

    /// The id of the project's container of `service` (`ps -q`).
    fn id(&self, service: &str) -> String {
        self.run(&["ps", "-q", service]).ok().out().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-t", "1", "--remove-orphans", "--rmi", "local"]);
    }
}

const SIMPLE: &str = r#"version: "3.7"
services:
  web:
    image: busybox
    command: sleep 300
    labels:
      berth.test.service: "web"
"#;

#[test]
fn recreate_reads_container_config_of_the_image() {
    let Some(p) = Project::new("crec", SIMPLE) else {
        return;
    };
    p.run(&["up", "-d"]).ok();
    let first = p.id("web");
    assert!(is_hex(&first, 64), "{first}");
    // Each recreate inspects the image and reads its ContainerConfig (KeyError without it).
    let o = p.run(&["up", "-d", "--force-recreate"]);
    o.ok();
    let second = p.id("web");
    assert_ne!(first, second, "{o}");
    p.run(&["create", "--force-recreate"]).ok();
    let third = p.id("web");
    assert_ne!(second, third);
    // A changed config recreates too.
    p.write(&SIMPLE.replace("sleep 300", "sleep 301"));
    p.run(&["up", "-d"]).ok();
    let fourth = p.id("web");
    assert_ne!(third, fourth);
    assert_eq!(
        fmt(p.d, &fourth, "{{json .Config.Cmd}}"),
        r#"["sleep","301"]"#
    );
    assert_eq!(fmt(p.d, &fourth, "{{.State.Status}}"), "running");
    // What compose read, per API version (dockerd: VirtualSize before 1.44).
    for (v, virtual_size) in [("1.41", true), ("1.45", false)] {
        let r = p.d.api("GET", &format!("/v{v}/images/busybox/json"));
        assert_eq!(r.status, 200);
        let j: Value = serde_json::from_slice(&r.body).expect("json");
        assert!(j["ContainerConfig"].is_object(), "v{v}: {j}");
        assert!(j["Container"].is_string(), "v{v}: {j}");
        assert_eq!(j.get("VirtualSize").is_some(), virtual_size, "v{v}");
    }
}

#[test]
fn empty_entrypoint() {
    let d = d();
    // An image with an entrypoint of its own, which `entrypoint: ""` must drop.
    let tag = format!("{}:ep", unique("berth-compose-ep"));
    let ctx = d.root().join(unique("epctx"));
    std::fs::create_dir_all(&ctx).expect("ctx");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nENTRYPOINT [\"/bin/false\"]\nCMD [\"x\"]\n",
    )
    .expect("Dockerfile");
    d.cli(&["build", "-q", "-t", &tag, ctx.to_str().expect("utf8")])
        .ok();
    let yml = format!(
        "version: \"3.7\"\nservices:\n  web:\n    image: {tag}\n    entrypoint: \"\"\n    command: sleep 300\n"
    );
    let Some(p) = Project::new("cep", &yml) else {
        d.cli(&["rmi", &tag]);
        return;
    };
    p.run(&["up", "-d"]).ok();
    let id = p.id("web");
    // Compose sends `[]`: no entrypoint, the service's command (dockerd shows `[]` too).
    assert_eq!(fmt(d, &id, "{{.State.Status}}"), "running");
    assert_eq!(fmt(d, &id, "{{json .Config.Cmd}}"), r#"["sleep","300"]"#);
    assert_eq!(fmt(d, &id, "{{.Path}}"), "sleep");
    // `run --entrypoint ""` sends `[""]`: reset to null, as dockerd does.
    let o = p.run(&["run", "-d", "--entrypoint", "", "web", "sleep", "302"]);
    o.ok();
    let one_off = o.out().lines().last().unwrap_or("").trim().to_string();
    assert_eq!(fmt(d, &one_off, "{{json .Config.Entrypoint}}"), "null");
    assert_eq!(
        fmt(d, &one_off, "{{json .Config.Cmd}}"),
        r#"["sleep","302"]"#
    );
    let o = p.run(&["run", "--rm", "--entrypoint", "", "web", "echo", "hi"]);
    o.ok();
    assert_eq!(o.out().lines().last(), Some("hi"), "{o}");
    d.rm_f(&[&one_off]);
    drop(p);
    d.cli(&["rmi", &tag]);
}

#[test]
fn up_no_start_remove_orphans() {
    let two = format!("{SIMPLE}  extra:\n    image: busybox\n    command: sleep 300\n");
    let Some(p) = Project::new("corph", &two) else {
        return;
    };
    p.run(&["up", "-d"]).ok();
    let extra = p.id("extra");
    let web = p.id("web");
    p.write(SIMPLE);
    let o = p.run(&["up", "--no-start", "--remove-orphans"]);
    o.ok();
    assert!(o.stderr.contains("Removing orphan container"), "{o}");
    assert!(p.d.inspect(&extra).is_none(), "orphan {extra} left");
    assert_eq!(p.id("web"), web, "an up-to-date service was recreated");
    // A config change: recreated, not started.
    p.write(&SIMPLE.replace("sleep 300", "sleep 303"));
    p.run(&["up", "--no-start", "--remove-orphans"]).ok();
    let new = p.id("web");
    assert_ne!(new, web);
    assert_eq!(fmt(p.d, &new, "{{.State.Status}}"), "created");
    // From nothing.
    p.run(&["down", "-t", "1"]).ok();
    p.run(&["up", "--no-start", "--remove-orphans"]).ok();
    let fresh = p.id("web");
    assert_eq!(fmt(p.d, &fresh, "{{.State.Status}}"), "created");
    p.run(&["start"]).ok();
    assert_eq!(fmt(p.d, &fresh, "{{.State.Status}}"), "running");
}

#[test]
fn create_before_the_network_exists() {
    let Some(p) = Project::new("cnet", SIMPLE) else {
        return;
    };
    // `create` makes no network: dockerd accepts a NetworkMode naming a missing one.
    let o = p.run(&["create"]);
    o.ok();
    let id = p.id("web");
    let net = format!("{}_default", p.name);
    assert_eq!(fmt(p.d, &id, "{{.HostConfig.NetworkMode}}"), net);
    let r = p.d.api("POST", &format!("/containers/{id}/start"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains(&format!("network {net} not found")),
        "{}",
        r.text()
    );
    // `up --no-start` makes it, and `start` attaches with the service's alias.
    p.run(&["up", "--no-start", "--remove-orphans"]).ok();
    p.run(&["start"]).ok();
    assert_eq!(fmt(p.d, &id, "{{.State.Status}}"), "running");
    let aliases = fmt(
        p.d,
        &id,
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    );
    assert!(aliases.contains("\"web\""), "{aliases}");
    let ip = fmt(
        p.d,
        &id,
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty());
}

#[test]
fn events_carry_the_containers_labels() {
    let Some(p) = Project::new("cevt", SIMPLE) else {
        return;
    };
    let mut child = p
        .cmd(&["events", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-compose events");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // Give the subscription a moment: compose starts it after reading the project.
    std::thread::sleep(Duration::from_secs(2));
    p.run(&["up", "-d"]).ok();
    p.run(&["stop", "-t", "1"]).ok();
    p.run(&["rm", "-f"]).ok();
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(v);
        }
        if seen.iter().any(|e| e["action"] == "destroy") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let actions: Vec<&str> = seen.iter().filter_map(|e| e["action"].as_str()).collect();
    for want in ["create", "start", "kill", "die", "stop", "destroy"] {
        assert!(actions.contains(&want), "no {want} event: {actions:?}");
    }
    for e in &seen {
        assert_eq!(e["service"], "web", "{e}");
        assert_eq!(e["attributes"]["berth.test.service"], "web", "{e}");
        assert_eq!(e["attributes"]["image"], "busybox", "{e}");
    }
}

/// A compose project whose service `web` is built from `dockerfile`.
fn build_project(prefix: &str, dockerfile: &str, build_extra: &str) -> Option<Project> {
    let yml = format!(
        "version: \"3.7\"\nservices:\n  web:\n    build:\n      context: .\n{build_extra}    command: sleep 300\n"
    );
    let p = Project::new(prefix, &yml)?;
    std::fs::write(p.dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
    Some(p)
}

#[test]
fn build_memory_and_shm_size_apply_to_run_steps() {
    // What the RUN step sees: its memory cgroup's limit and the size of its /dev/shm.
    let mem = "p=$(grep -E ':([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3); \
               for f in /sys/fs/cgroup/memory/memory.limit_in_bytes \
                        /sys/fs/cgroup/memory$p/memory.limit_in_bytes /sys/fs/cgroup/memory.max; do \
                 if [ -r $f ]; then echo MEM=$(cat $f); break; fi; done; \
               echo SHM=$(df -k /dev/shm | tail -n 1 | awk '{print $2}')";
    let Some(p) = build_project(
        "cbres",
        &format!("FROM busybox\nRUN {mem}\n"),
        "      shm_size: '96m'\n",
    ) else {
        return;
    };
    let o = p.run(&["build", "--memory", "64m", "--no-cache", "web"]);
    o.ok();
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(all.contains("MEM=67108864"), "{o}");
    assert!(all.contains(&format!("SHM={}", 96 * 1024)), "{o}");
}

#[test]
fn failed_build_leaves_its_step_container_unless_force_rm() {
    let Some(p) = build_project(
        "cbfail",
        "FROM busybox\nLABEL berth.test.failed=\"yes\"\nRUN echo step >/marker && exit 3\n",
        "",
    ) else {
        return;
    };
    let label = "berth.test.failed=yes";
    let left = |d: &Daemon| -> Vec<String> {
        let o = d.cli(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ]);
        o.ok();
        o.out().lines().map(str::to_string).collect()
    };
    let before = left(p.d);
    let o = p.run(&["build", "--no-cache", "web"]);
    assert!(!o.success(), "the build should fail: {o}");
    let kept: Vec<String> = left(p.d)
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    assert_eq!(kept.len(), 1, "the failed step's container: {kept:?}\n{o}");
    let _rm = Rm(p.d, kept.clone());
    // An ordinary exited container: the step's command, its exit code, its changes.
    assert_eq!(fmt(p.d, &kept[0], "{{.State.ExitCode}}"), "3");
    assert_eq!(fmt(p.d, &kept[0], "{{.State.Status}}"), "exited");
    let diff = p.d.cli(&["diff", &kept[0]]);
    diff.ok();
    assert!(diff.out().lines().any(|l| l == "A /marker"), "{diff}");
    // `--force-rm`: nothing new stays.
    let o = p.run(&["build", "--no-cache", "--force-rm", "web"]);
    assert!(!o.success(), "the build should fail: {o}");
    let after: Vec<String> = left(p.d)
        .into_iter()
        .filter(|c| !before.contains(c) && !kept.contains(c))
        .collect();
    assert!(after.is_empty(), "--force-rm left {after:?}");
}
