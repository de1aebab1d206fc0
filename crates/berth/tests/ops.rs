//! top, stats, pause/unpause, update, diff, commit, export.

mod common;
use common::*;

fn running(d: &Daemon, rm: &mut Rm, name: &str, extra: &[&str], cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.push("busybox");
    args.extend_from_slice(cmd);
    let out = d.cli(&args);
    assert!(out.success(), "run: {out:?}");
    rm.add(name);
}

#[test]
fn top_lists_the_containers_processes() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("top");
    running(
        d,
        &mut rm,
        &name,
        &[],
        &["sh", "-c", "sleep 301 & sleep 302"],
    );
    assert!(wait_until(DEADLINE, || d
        .cli(&["top", &name])
        .stdout
        .contains("sleep 302")));
    let out = d.cli(&["top", &name]);
    assert!(out.stdout.starts_with("UID"), "{out:?}");
    assert!(out.stdout.contains("sleep 301") && out.stdout.contains("sleep 302"));
    assert!(
        !out.stdout.contains("berth daemon"),
        "host processes leaked: {}",
        out.stdout
    );
    let j = d
        .api(
            "GET",
            &format!("/containers/{name}/top?ps_args=-o%20pid,comm"),
        )
        .json()
        .expect("json");
    assert_eq!(j["Titles"], json!(["PID", "COMMAND"]));
    // sh execs its last command: two sleeps.
    assert_eq!(j["Processes"].as_array().map(|a| a.len()), Some(2), "{j}");
    let stopped = unique("tops");
    assert!(d.cli(&["create", "--name", &stopped, "busybox"]).success());
    rm.add(&stopped);
    assert_eq!(
        d.api("GET", &format!("/containers/{stopped}/top")).status,
        409
    );
}

#[test]
fn stats_one_shot_stream_and_cli() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("st");
    running(
        d,
        &mut rm,
        &name,
        &["-m", "64m", "--pids-limit", "50"],
        &["sh", "-c", "dd if=/dev/zero of=/dev/null & sleep 300"],
    );
    let j = d
        .api("GET", &format!("/containers/{name}/stats?stream=false"))
        .json()
        .expect("json");
    assert_eq!(j["name"], format!("/{name}"));
    assert!(
        j["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{j}"
    );
    assert!(
        j["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "stream=false fills precpu: {j}"
    );
    assert!(j["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0);
    assert!(j["cpu_stats"]["online_cpus"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(j["memory_stats"]["limit"], 64 * 1024 * 1024);
    assert!(j["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0);
    assert!(j["pids_stats"]["current"].as_u64().unwrap_or(0) >= 2, "{j}");
    assert_eq!(j["pids_stats"]["limit"], 50);
    let j = d
        .api(
            "GET",
            &format!("/containers/{name}/stats?stream=false&one-shot=true"),
        )
        .json()
        .expect("json");
    assert_eq!(j["precpu_stats"]["cpu_usage"]["total_usage"], 0);

    // Streaming: one JSON object per second.
    let mut child = d
        .spawn_cli(&[
            "stats",
            "--format",
            "{{.Name}} {{.CPUPerc}} {{.PIDs}}",
            &name,
        ])
        .expect("spawn");
    // Two frames, however loaded the machine: read lines until both arrived (or 60 s).
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    while text.matches(&name).count() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.matches(&name).count() >= 2, "{text}");

    let out = d.cli(&["stats", "--no-stream", &name]);
    assert!(out.success(), "{out:?}");
    let line = out.stdout.lines().nth(1).expect("row");
    assert!(line.contains(&name) && line.contains("64MiB"), "{line}");
    // dd keeps a CPU busy: far above zero.
    let cpu: f64 = line
        .split_whitespace()
        .find(|w| w.ends_with('%'))
        .and_then(|w| w.trim_end_matches('%').parse().ok())
        .expect("cpu %");
    assert!(cpu > 10.0, "{line}");
}

#[test]
fn pause_unpause_and_update() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("pz");
    running(
        d,
        &mut rm,
        &name,
        &[],
        &[
            "sh",
            "-c",
            "while :; do date +%s%N > /tmp/t; sleep 0.05; done",
        ],
    );
    assert!(d.cli(&["pause", &name]).success());
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "paused");
    assert_eq!(fmt(d, &name, "{{.State.Paused}}"), "true");
    let r = d.api("POST", &format!("/containers/{name}/pause"));
    assert_eq!(r.status, 409);
    let out = d.cli(&["exec", &name, "true"]);
    assert!(out.stderr.contains("is paused"), "{out:?}");
    // Frozen: the file does not change while paused.
    let rootfs = format!("/proc/{}/root/tmp/t", fmt(d, &name, "{{.State.Pid}}"));
    let a = std::fs::read_to_string(&rootfs).expect("t");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&rootfs).expect("t"),
        a,
        "still running while paused"
    );
    assert!(d.cli(&["unpause", &name]).success());
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "running");
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(&rootfs)
        .ok()
        != Some(a.clone())));
    assert_eq!(
        d.api("POST", &format!("/containers/{name}/unpause")).status,
        409
    );

    // update: memory, cpus, pids, restart policy, live in the cgroup and in inspect.
    let out = d.cli(&[
        "update",
        "-m",
        "96m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "77",
        "--restart",
        "on-failure:3",
        &name,
    ]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        fmt(d, &name, "{{.HostConfig.Memory}}"),
        (96 * 1024 * 1024).to_string()
    );
    assert_eq!(fmt(d, &name, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(fmt(d, &name, "{{.HostConfig.PidsLimit}}"), "77");
    assert_eq!(
        fmt(d, &name, "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );
    let j = d
        .api(
            "GET",
            &format!("/containers/{name}/stats?stream=false&one-shot=true"),
        )
        .json()
        .expect("json");
    assert_eq!(j["memory_stats"]["limit"], 96 * 1024 * 1024);
    assert_eq!(j["pids_stats"]["limit"], 77);
    let r = d
        .api_with(
            "POST",
            &format!("/containers/{name}/update"),
            &[("Content-Type", "application/json")],
            Some(br#"{"Memory": 1024}"#),
        )
        .expect("update");
    assert_eq!(r.status, 400);
    // Stopping a paused container works.
    assert!(d.cli(&["pause", &name]).success());
    assert!(d.cli(&["stop", "-t", "1", &name]).success());
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "exited");
}

#[test]
fn diff_commit_and_export() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("dc");
    let out = d.cli(&[
        "run",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo new > /added && rm /etc/group && echo x >> /etc/passwd",
    ]);
    assert!(out.success(), "{out:?}");
    rm.add(&name);
    let out = d.cli(&["diff", &name]);
    assert!(out.stdout.contains("A /added"), "{}", out.stdout);
    assert!(out.stdout.contains("D /etc/group"), "{}", out.stdout);
    assert!(out.stdout.contains("C /etc/passwd"), "{}", out.stdout);

    let tag = format!("committed-{}", unique("t").to_lowercase());
    let out = d.cli(&[
        "commit",
        "-c",
        "ENV FOO=bar",
        "-m",
        "msg",
        &name,
        &format!("{tag}:v1"),
    ]);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.trim().starts_with("sha256:"), "{out:?}");
    let out = d.cli(&[
        "run",
        "--rm",
        &format!("{tag}:v1"),
        "sh",
        "-c",
        "cat /added; echo $FOO; test -e /etc/group || echo gone",
    ]);
    assert_eq!(out.stdout, "new\nbar\ngone\n", "{out:?}");
    let _ = d.cli(&["rmi", &format!("{tag}:v1")]);

    let tmp = tempfile::tempdir().expect("tmp");
    let tarfile = tmp.path().join("fs.tar");
    let out = d.cli(&["export", "-o", &tarfile.display().to_string(), &name]);
    assert!(out.success(), "{out:?}");
    let mut ar = tar::Archive::new(std::fs::File::open(&tarfile).expect("tar"));
    let names: Vec<String> = ar
        .entries()
        .expect("entries")
        .flatten()
        .map(|e| e.path().expect("path").display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "added"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox"));
    assert!(!names.iter().any(|n| n == "etc/group"));
}

/// The mount points every container gets (/etc/hosts, /etc/hostname, /etc/resolv.conf, /proc,
/// /dev/shm...) live in the snapshot's init layer, as in dockerd: `diff` and `commit` see only
/// what the container did.
#[test]
fn diff_and_commit_leave_out_the_init_layer() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("init");
    d.cli(&["run", "--name", &name, "busybox", "touch", "/test"])
        .ok();
    rm.add(&name);
    assert_eq!(d.cli(&["diff", &name]).ok().out(), "A /test");
    let tag = format!("initlayer-{}", unique("t").to_lowercase());
    d.cli(&["commit", &name, &tag]).ok();
    let tmp = tempfile::tempdir().expect("tmp");
    let saved = tmp.path().join("img.tar");
    d.cli(&["save", "-o", saved.to_str().expect("utf8"), &tag])
        .ok();
    // The committed layer (the image's last): exactly /test.
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut ar = tar::Archive::new(std::fs::File::open(&saved).expect("tar"));
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").display().to_string();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut b).expect("read");
        files.insert(path, b);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    let layers = manifest[0]["Layers"].as_array().expect("layers");
    let top = layers.last().and_then(|l| l.as_str()).expect("top layer");
    let mut ar = tar::Archive::new(&files[top][..]);
    let names: Vec<String> = ar
        .entries()
        .expect("layer entries")
        .flatten()
        .map(|e| e.path().expect("path").display().to_string())
        .collect();
    assert_eq!(names, ["test"], "committed layer");
    // A container of the committed image still gets its mount points, and its diff is empty.
    let again = unique("init2");
    d.cli(&["run", "--name", &again, &tag, "cat", "/etc/hostname"])
        .ok();
    rm.add(&again);
    assert_eq!(d.cli(&["diff", &again]).ok().out(), "");
    drop(rm);
    let _ = d.cli(&["rmi", &tag]);
}

#[test]
fn restarting_container_needs_force_and_runtime_is_named() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("rs");
    assert!(d
        .cli(&[
            "run",
            "-d",
            "--name",
            &name,
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "exit 1"
        ])
        .success());
    rm.add(&name);
    assert_eq!(fmt(d, &name, "{{.HostConfig.Runtime}}"), "runc");
    assert!(wait_until(DEADLINE, || fmt(d, &name, "{{.State.Status}}")
        == "restarting"));
    let out = d.cli(&["rm", &name]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("stop the container before removing"),
        "{out:?}"
    );
    assert!(d.cli(&["rm", "-f", &name]).success());
}

#[test]
fn committed_image_records_its_container_and_parent() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("cc");
    d.cli(&["run", "--name", &name, "busybox", "touch", "/test"])
        .ok();
    rm.add(&name);
    let cid = fmt(d, &name, "{{.Id}}");
    let r = d
        .api_with(
            "POST",
            &format!("/v1.45/commit?container={name}"),
            &[("Content-Type", "application/json")],
            Some(br#"{"ExposedPorts":{"8000/tcp":{}},"Cmd":["bash"]}"#),
        )
        .expect("POST /commit");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json().expect("json")["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let img = d.api("GET", &format!("/v1.45/images/{id}/json"));
    assert_eq!(img.status, 200, "{}", img.text());
    let img = img.json().expect("json");
    // Docker (API 1.45) still reports the container a commit came from and its config.
    assert_eq!(img["Container"], json!(cid), "{img}");
    assert_eq!(img["ContainerConfig"]["Image"], json!("busybox"), "{img}");
    assert_eq!(
        img["ContainerConfig"]["Cmd"],
        json!(["touch", "/test"]),
        "{img}"
    );
    assert_eq!(img["Config"]["Cmd"], json!(["bash"]), "{img}");
    let busybox = fmt(d, "busybox", "{{.Id}}");
    assert_eq!(img["Parent"], json!(busybox), "{img}");
    // An image that was not committed has an empty Container (as dockerd's pulled images do;
    // compose 1.29 reads the field), and no parent.
    let base = d
        .api("GET", "/v1.45/images/busybox/json")
        .json()
        .expect("json");
    assert_eq!(base["Container"], json!(""), "{base}");
    assert_eq!(base["Parent"], json!(""), "{base}");
    let _ = d.cli(&["rmi", &id]);
}

/// The value of a cgroup v1 file of a running container (`cpu`, `memory`, `pids` hierarchies).
fn cgroup_v1(pid: &str, controller: &str, file: &str) -> Option<String> {
    let map = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = map.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctl, p) = (it.next()?, it.next()?, it.next()?);
        ctl.split(',')
            .any(|c| c == controller)
            .then(|| p.to_string())
    })?;
    let dir = std::fs::read_dir("/sys/fs/cgroup")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.split(',').any(|c| c == controller))
        })?;
    std::fs::read_to_string(dir.join(path.trim_start_matches('/')).join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn out_of_range_resources_are_refused_at_create_and_update() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let post = |path: &str, body: &Value| {
        d.api_with(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
        .expect("request")
    };
    let cases: [(&str, Value, &str); 5] = [
        (
            "Memory",
            json!(1i64 << 62),
            "Maximum memory limit allowed is",
        ),
        (
            "NanoCpus",
            json!(1i64 << 60),
            "Range of CPUs is from 0.01 to",
        ),
        (
            "NanoCpus",
            json!(92_233_720_368_548i64),
            "Range of CPUs is from 0.01 to",
        ),
        (
            "CpuPeriod",
            json!(1),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ),
        (
            "PidsLimit",
            json!(i64::MAX),
            "Maximum PIDs limit allowed is 4194304",
        ),
    ];
    for (field, value, words) in &cases {
        let name = unique("lim");
        rm.add(&name);
        let r = post(
            &format!("/containers/create?name={name}"),
            &json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {*field: value}}),
        );
        assert_eq!(r.status, 400, "{field}={value}: {}", r.text());
        let msg = r.json().expect("json")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.starts_with(words), "{field}={value}: {msg}");
        assert_eq!(
            d.api("GET", &format!("/containers/{name}/json")).status,
            404,
            "{field}={value}: a refused create leaves no container"
        );
    }

    // Valid CFS settings reach the cgroup as given (they were dropped before); the same bad
    // values are refused by update and leave the limits as they were.
    let name = unique("limu");
    running(
        d,
        &mut rm,
        &name,
        &["--cpu-period", "50000", "--cpu-quota", "25000", "-m", "64m"],
        &["sleep", "300"],
    );
    let pid = fmt(d, &name, "{{.State.Pid}}");
    let quota = cgroup_v1(&pid, "cpu", "cpu.cfs_quota_us");
    if quota.is_none() {
        eprintln!("no cgroup v1 cpu hierarchy here: cgroup values not checked");
    }
    if let Some(q) = &quota {
        assert_eq!(q, "25000");
        assert_eq!(
            cgroup_v1(&pid, "cpu", "cpu.cfs_period_us").as_deref(),
            Some("50000")
        );
    }
    let mem_before = cgroup_v1(&pid, "memory", "memory.limit_in_bytes");
    for (field, value, words) in &cases {
        let r = post(
            &format!("/containers/{name}/update"),
            &json!({ *field: value }),
        );
        assert_eq!(r.status, 400, "update {field}={value}: {}", r.text());
        let msg = r.json().expect("json")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // The merged settings may hit the CPU conflict rule first (a period is set).
        assert!(
            msg.starts_with(words) || msg.starts_with("Conflicting options"),
            "update {field}={value}: {msg}"
        );
    }
    assert_eq!(
        fmt(d, &name, "{{.HostConfig.Memory}}"),
        (64 << 20).to_string()
    );
    assert_eq!(fmt(d, &name, "{{.HostConfig.CpuPeriod}}"), "50000");
    assert_eq!(fmt(d, &name, "{{.HostConfig.NanoCpus}}"), "0");
    assert_eq!(
        cgroup_v1(&pid, "memory", "memory.limit_in_bytes"),
        mem_before
    );
    assert_eq!(cgroup_v1(&pid, "cpu", "cpu.cfs_quota_us"), quota);
}
