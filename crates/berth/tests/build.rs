//! `berth build` against a real daemon: the legacy builder's output, stages, cache, context
//! handling and errors. Base image: the offline busybox.

mod common;
use common::*;
use std::path::Path;

/// A context directory with the given files (path, content).
fn ctx(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let full = t.path().join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, c).unwrap();
    }
    t
}

fn build(d: &Daemon, dir: &Path, extra: &[&str]) -> Out {
    let mut a = vec!["build"];
    a.extend_from_slice(extra);
    let p = dir.to_string_lossy().into_owned();
    a.push(&p);
    d.cli(&a)
}

/// `run --rm <image> <cmd...>` stdout.
fn run(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    let o = d.cli(&a);
    o.ok();
    o.stdout.clone()
}

struct Rmi<'a>(&'a Daemon, Vec<String>);
impl Drop for Rmi<'_> {
    fn drop(&mut self) {
        for i in &self.1 {
            let _ = self.0.cli(&["rmi", "-f", i]);
        }
    }
}

#[test]
fn basic_build_output_and_image_config() {
    let d = d();
    let tag = unique("b-basic");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nENV GREETING=hello\nWORKDIR /app\nCOPY hello.txt .\nRUN echo \"$GREETING from run\" > /app/run.txt && mkdir -p /home/u && chown 1000 /home/u\nUSER 1000:1000\nEXPOSE 8080\nLABEL a=b\nCMD [\"cat\", \"/app/hello.txt\", \"/app/run.txt\"]\n",
        ),
        ("hello.txt", "file content\n"),
    ]);
    let o = build(d, c.path(), &["-t", &tag]);
    o.ok();
    assert!(o.stdout.contains("Step 1/9 : FROM busybox"), "{o}");
    assert!(o.stdout.contains("Step 5/9 : RUN echo"), "{o}");
    assert!(o.stdout.contains(" ---> Running in "), "{o}");
    assert!(o.stdout.contains("Successfully built "), "{o}");
    assert!(
        o.stdout
            .contains(&format!("Successfully tagged {tag}:latest")),
        "{o}"
    );
    assert_eq!(run(d, &[&tag]), "file content\nhello from run\n");
    // USER and WORKDIR took effect in the final image.
    assert_eq!(run(d, &[&tag, "sh", "-c", "id -u; pwd"]), "1000\n/app\n");
    assert_eq!(
        d.fmt(
            &tag,
            "{{.Config.User}} {{.Config.WorkingDir}} {{.Config.Labels.a}}"
        ),
        "1000:1000 /app b"
    );
    assert!(d
        .fmt(&tag, "{{json .Config.ExposedPorts}}")
        .contains("8080/tcp"));
}

#[test]
fn cache_hit_and_precise_invalidation() {
    let d = d();
    let tag = unique("b-cache");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a2.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /ab.txt\n",
        ),
        ("a.txt", "A1\n"),
        ("b.txt", "B1\n"),
    ]);
    build(d, c.path(), &["-t", &tag]).ok();
    let o = build(d, c.path(), &["-t", &tag]);
    o.ok();
    assert_eq!(o.stdout.matches(" ---> Using cache").count(), 4, "{o}");
    assert!(!o.stdout.contains("Running in"), "{o}");
    // Editing b.txt re-runs only from the COPY of b.txt.
    std::fs::write(c.path().join("b.txt"), "B2\n").unwrap();
    let o = build(d, c.path(), &["-t", &tag]);
    o.ok();
    assert_eq!(o.stdout.matches(" ---> Using cache").count(), 2, "{o}");
    assert_eq!(o.stdout.matches("Running in").count(), 1, "{o}");
    assert_eq!(run(d, &[&tag, "cat", "/ab.txt"]), "A1\nB2\n");
    // A mode change alone is a change too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        c.path().join("a.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let o = build(d, c.path(), &["-t", &tag]);
    assert_eq!(o.stdout.matches(" ---> Using cache").count(), 0, "{o}");
    // --no-cache runs everything.
    let o = build(d, c.path(), &["--no-cache", "-t", &tag]);
    o.ok();
    assert_eq!(o.stdout.matches("Using cache").count(), 0, "{o}");
    assert_eq!(o.stdout.matches("Running in").count(), 2, "{o}");
}

#[test]
fn multi_stage_with_target_skips_unneeded_stages() {
    let d = d();
    let (t1, t2) = (unique("b-ms"), unique("b-ms-t"));
    let _g = Rmi(d, vec![t1.clone(), t2.clone()]);
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox AS build\nRUN echo built > /out.txt\n\nFROM busybox AS unused\nRUN exit 7\n\nFROM busybox AS test\nRUN echo test-stage > /t.txt\n\nFROM scratch\nCOPY --from=build /out.txt /out.txt\nCOPY --from=0 /bin/busybox /bin/cat\n",
    )]);
    let o = build(d, c.path(), &["-t", &t1]);
    o.ok();
    assert!(!o.stdout.contains("exit 7"), "the unused stage ran: {o}");
    assert!(!o.stdout.contains("test-stage"), "{o}");
    assert_eq!(run(d, &[&t1, "/bin/cat", "/out.txt"]), "built\n");
    let o = build(d, c.path(), &["--target", "test", "-t", &t2]);
    o.ok();
    assert!(o.stdout.contains("Step 1/2 : FROM busybox AS test"), "{o}");
    assert_eq!(run(d, &[&t2, "cat", "/t.txt"]), "test-stage\n");
    let o = build(d, c.path(), &["--target", "nope"]);
    o.fails();
    assert!(
        o.stderr
            .contains("failed to reach build target nope in Dockerfile"),
        "{o}"
    );
}

#[test]
fn dockerignore_with_exceptions() {
    let d = d();
    let tag = unique("b-ign");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
        (".dockerignore", "*.log\n!keep.log\nsecret/\n**/*.tmp\n"),
        ("a.log", "x"),
        ("keep.log", "k"),
        ("secret/key", "s"),
        ("src/main.txt", "m"),
        ("src/x.tmp", "t"),
    ]);
    build(d, c.path(), &["-t", &tag]).ok();
    let files = run(d, &[&tag, "find", "/ctx", "-type", "f"]);
    let mut f: Vec<&str> = files.lines().collect();
    f.sort();
    assert_eq!(
        f,
        vec![
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/keep.log",
            "/ctx/src/main.txt"
        ]
    );
}

#[test]
fn heredocs_run_and_copy() {
    let d = d();
    let tag = unique("b-here");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nARG NAME=world\nRUN <<EOF\necho one > /one.txt\necho \"hi $NAME\" >> /one.txt\nEOF\nCOPY <<EOT /etc/greeting\nhello ${NAME}\nEOT\nCOPY <<'EOT' /etc/raw\nkeep $NAME\nEOT\n",
    )]);
    build(d, c.path(), &["-t", &tag]).ok();
    assert_eq!(
        run(d, &[&tag, "cat", "/one.txt", "/etc/greeting", "/etc/raw"]),
        "one\nhi world\nhello world\nkeep $NAME\n"
    );
}

#[test]
fn arg_before_from_and_build_args() {
    let d = d();
    let tag = unique("b-arg");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[(
        "Dockerfile",
        "ARG BASE=busybox\nARG VER=latest\nFROM ${BASE}:${VER}\nARG VER\nARG COLOR=red\nRUN echo \"$VER $COLOR\" > /v.txt\nENV C=$COLOR\n",
    )]);
    let o = build(
        d,
        c.path(),
        &[
            "-t",
            &tag,
            "--build-arg",
            "COLOR=blue",
            "--build-arg",
            "UNUSED=1",
        ],
    );
    o.ok();
    assert!(o.stdout.contains("Step 3/7 : FROM ${BASE}:${VER}"), "{o}");
    assert!(
        o.stdout
            .contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{o}"
    );
    assert_eq!(
        run(d, &[&tag, "sh", "-c", "cat /v.txt; echo $C"]),
        "latest blue\nblue\n"
    );
    // Predefined proxy args reach RUN without an ARG, and stay out of the image and history.
    let tag2 = unique("b-proxy");
    let _g2 = Rmi(d, vec![tag2.clone()]);
    let c2 = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo \"p=$HTTP_PROXY\" > /p.txt\n",
    )]);
    build(
        d,
        c2.path(),
        &[
            "-t",
            &tag2,
            "--build-arg",
            "HTTP_PROXY=http://proxy.invalid:3128",
        ],
    )
    .ok();
    assert_eq!(
        run(d, &[&tag2, "cat", "/p.txt"]),
        "p=http://proxy.invalid:3128\n"
    );
    let h = d.cli(&["history", "--no-trunc", &tag2]);
    assert!(!h.stdout.contains("proxy.invalid"), "{h}");
    assert!(!d.fmt(&tag2, "{{json .Config.Env}}").contains("PROXY"));
    // Build args are not in the image's environment.
    assert!(!d.fmt(&tag, "{{json .Config.Env}}").contains("COLOR"));
}

#[test]
fn failing_run_reports_exit_code_and_stops() {
    let d = d();
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo before\nRUN exit 3\nRUN echo after\n",
    )]);
    // `--force-rm`: the failed step's container goes too (without it, it stays, as in Docker).
    let o = build(d, c.path(), &["--force-rm"]);
    if o.code != 1 || !o.stderr.contains("non-zero") {
        panic!("{o}\ndaemon log:\n{}", d.log_text());
    }
    assert!(
        o.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{o}"
    );
    assert!(!o.stdout.contains("Step 4/4"), "{o}");
    // The API stream carries the code.
    let c2 = ctx(&[("Dockerfile", "FROM busybox\nRUN false\n")]);
    let o = build(d, c2.path(), &["-q", "--force-rm"]);
    o.code_is(1);
    assert!(o.stderr.contains("returned a non-zero code: 1"), "{o}");
}

#[test]
fn syntax_error_names_line() {
    let d = d();
    let c = ctx(&[("Dockerfile", "FROM busybox\nRUN true\nFOO bar\n")]);
    let o = build(d, c.path(), &[]);
    o.fails();
    assert!(
        o.stderr
            .contains("Dockerfile parse error line 3: unknown instruction: FOO"),
        "{o}"
    );
    let c = ctx(&[("Dockerfile", "FROM busybox\nCOPY --nope=1 a b\n")]);
    let o = build(d, c.path(), &[]);
    assert!(o.stderr.contains("line 2: Unknown flag: nope"), "{o}");
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nENV A=1\nENV B=\"unterminated\n",
    )]);
    let o = build(d, c.path(), &[]);
    o.fails();
    assert!(
        o.stderr.contains("Dockerfile line 3: failed to process"),
        "{o}"
    );
    let c = ctx(&[("Dockerfile", "FROM busybox\nRUN <<EOF\necho\n")]);
    let o = build(d, c.path(), &[]);
    assert!(o.stderr.contains("line 2: unterminated heredoc"), "{o}");
}

#[test]
fn copy_semantics_chown_chmod_globs_and_add_tar() {
    let d = d();
    let tag = unique("b-copy");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY --chown=1234:55 --chmod=751 *.sh /scripts/\nCOPY dir /d\nADD arch.tar /unpacked/\nCOPY dir/sub/f.txt /single\n",
        ),
        ("a.sh", "a"),
        ("b.sh", "b"),
        ("c.txt", "c"),
        ("dir/sub/f.txt", "f"),
    ]);
    {
        let f = std::fs::File::create(c.path().join("arch.tar")).unwrap();
        let mut tb = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, "inner/x.txt", &b"xyz"[..]).unwrap();
        tb.finish().unwrap();
    }
    build(d, c.path(), &["-t", &tag]).ok();
    let out = run(d, &[&tag, "sh", "-c", "stat -c '%n %u %g %a' /scripts/*; ls /scripts; cat /d/sub/f.txt /unpacked/inner/x.txt /single"]);
    assert_eq!(
        out,
        "/scripts/a.sh 1234 55 751\n/scripts/b.sh 1234 55 751\na.sh\nb.sh\nfxyzf"
    );
}

#[test]
fn copy_outside_context_is_refused() {
    let d = d();
    let c = ctx(&[("Dockerfile", "FROM busybox\nCOPY ../../etc/passwd /x\n")]);
    let o = build(d, c.path(), &[]);
    o.fails();
    assert!(
        o.stderr
            .contains("forbidden path outside the build context"),
        "{o}"
    );
    // A symlink in the context pointing outside resolves inside it.
    let c = ctx(&[("Dockerfile", "FROM busybox\nCOPY link /x\n")]);
    std::os::unix::fs::symlink("/etc/hostname", c.path().join("link")).unwrap();
    let o = build(d, c.path(), &[]);
    o.fails();
    assert!(o.stderr.contains("file not found in build context"), "{o}");
}

#[test]
fn dockerfile_from_stdin_and_quiet_iidfile() {
    let d = d();
    let o = d.cli_in(&["build", "-q", "-"], b"FROM busybox\nLABEL from=stdin\n");
    o.ok();
    let id = o.out().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{o}");
    assert_eq!(d.fmt(&id, "{{.Config.Labels.from}}"), "stdin");
    let c = ctx(&[("Dockerfile.alt", "FROM busybox\nCMD [\"echo\", \"alt\"]\n")]);
    let iid = c.path().join("iid");
    let f = c.path().join("Dockerfile.alt");
    let o = build(
        d,
        c.path(),
        &[
            "-f",
            f.to_str().unwrap(),
            "--iidfile",
            iid.to_str().unwrap(),
            "--label",
            "x=y",
        ],
    );
    o.ok();
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(run(d, &[&id]), "alt\n");
    assert_eq!(d.fmt(&id, "{{.Config.Labels.x}}"), "y");
    let _ = d.cli(&["rmi", "-f", &id]);
}

#[test]
fn same_build_same_digest_with_source_date_epoch() {
    let d = d();
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nRUN echo x > /y\nENV A=1\n",
        ),
        ("f", "f"),
    ]);
    let a = [
        "--no-cache",
        "-q",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ];
    let o1 = build(d, c.path(), &a);
    o1.ok();
    let o2 = build(d, c.path(), &a);
    o2.ok();
    assert_eq!(o1.out(), o2.out());
}

/// The docker CLI's legacy builder (`DOCKER_BUILDKIT=0 docker build`) against Berth; the
/// built image runs. Skipped, with a message, without a `docker` CLI.
#[test]
fn docker_cli_legacy_build() {
    let d = d();
    let Some(docker) = berth_testkit::which("docker") else {
        eprintln!("SKIPPED: no `docker` CLI on PATH");
        return;
    };
    let tag = unique("b-docker");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        ("Dockerfile", "FROM busybox\nCOPY msg.txt /msg.txt\nRUN echo built-by-docker >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n"),
        ("msg.txt", "hello\n"),
    ]);
    let cfg = tempfile::tempdir().unwrap();
    let docker_build_env = |extra: &[&str], buildkit: Option<&str>| {
        let mut cmd = std::process::Command::new(&docker);
        cmd.arg("build")
            .args(extra)
            .arg("-t")
            .arg(&tag)
            .arg(".")
            .current_dir(c.path())
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", cfg.path())
            .env_remove("DOCKER_BUILDKIT")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        if let Some(v) = buildkit {
            cmd.env("DOCKER_BUILDKIT", v);
        }
        berth_testkit::run_with_timeout(cmd, None, Duration::from_secs(60))
    };
    let docker_build = |extra: &[&str]| docker_build_env(extra, Some("0"));
    let o = docker_build(&[]);
    o.ok();
    assert!(
        o.stdout
            .contains("Step 3/4 : RUN echo built-by-docker >> /msg.txt"),
        "{o}"
    );
    assert!(o.stdout.contains("Successfully built "), "{o}");
    assert!(
        o.stdout
            .contains(&format!("Successfully tagged {tag}:latest")),
        "{o}"
    );
    assert_eq!(run(d, &[&tag]), "hello\nbuilt-by-docker\n");
    let o = docker_build(&[]);
    o.ok();
    assert_eq!(o.stdout.matches("Using cache").count(), 3, "{o}");
    // Plain `docker build -t x .`: without the buildx plugin the CLI falls back to the
    // legacy builder by itself.
    let buildx = std::process::Command::new(&docker)
        .args(["buildx", "version"])
        .env("DOCKER_CONFIG", cfg.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !buildx {
        let o = docker_build_env(&[], None);
        o.ok();
        assert!(o.stdout.contains("Successfully tagged"), "{o}");
    }
    // A failing RUN: docker prints the legacy message and exits with the code.
    std::fs::write(c.path().join("Dockerfile"), "FROM busybox\nRUN exit 5\n").unwrap();
    let o = docker_build(&["--force-rm"]);
    assert!(
        o.stderr
            .contains("The command '/bin/sh -c exit 5' returned a non-zero code: 5"),
        "{o}"
    );
    assert_eq!(o.code, 5, "{o}");
    // -q prints just the id.
    std::fs::write(c.path().join("Dockerfile"), "FROM busybox\nLABEL q=1\n").unwrap();
    let o = docker_build(&["-q"]);
    o.ok();
    assert!(o.out().starts_with("sha256:"), "{o}");
}

#[test]
fn intermediate_images_listed_with_all_only() {
    let d = d();
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nENV A=1\nRUN echo x > /x\nLABEL marker=intermediate-test\n",
    )]);
    let o = build(d, c.path(), &[]);
    o.ok();
    // This build's own images (not a count: other tests build and delete images meanwhile).
    let ids = step_ids(&o);
    assert_eq!(ids.len(), 4, "busybox and three steps: {o}");
    let plain = d.cli(&["images", "-q"]);
    let all = d.cli(&["images", "-a", "-q"]);
    // The untagged result is listed (dangling); its untagged parents only with -a.
    assert!(plain.stdout.contains(&ids[3]), "{plain}");
    for p in &ids[1..3] {
        assert!(!plain.stdout.contains(p), "{p} listed without -a: {plain}");
        assert!(all.stdout.contains(p), "{p} not listed with -a: {all}");
    }
    let _ = d.cli(&["rmi", &ids[3]]);
}

/// The short ids a legacy build printed (" ---> 0123456789ab"), the base image's first.
fn step_ids(o: &Out) -> Vec<String> {
    o.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(" ---> "))
        .filter(|s| is_hex(s, 12))
        .map(String::from)
        .collect()
}

fn exists(d: &Daemon, id: &str) -> bool {
    d.cli(&["image", "inspect", "--format", "{{.Id}}", id]).code == 0
}

#[test]
fn rmi_deletes_the_untagged_parent_chain() {
    let d = d();
    let tag = unique("b-rmi-chain");
    let c = ctx(&[(
        "Dockerfile",
        // Unique content: no step or layer is shared with a concurrent test's build.
        &format!("FROM busybox\nENV A={tag}\nRUN echo {tag} > /x\nLABEL marker=rmi-chain\n"),
    )]);
    let o = build(d, c.path(), &["-t", &tag]);
    o.ok();
    let ids = step_ids(&o);
    assert_eq!(ids.len(), 4, "busybox and three steps: {o}");
    let o = d.cli(&["rmi", &tag]);
    o.ok();
    // As Docker: untagged, then the image and its untagged parents (ENV, RUN) are deleted, and
    // the RUN step's layer with them; busybox, tagged, ends the walk.
    assert!(
        o.stdout.starts_with(&format!("Untagged: {tag}:latest\n")),
        "{o}"
    );
    let deleted = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("Deleted: sha256:"))
        .count();
    assert_eq!(deleted, 4, "three images and one layer: {o}");
    for id in &ids[1..] {
        assert!(!exists(d, id), "{id} is left after rmi: {o}");
    }
    assert!(exists(d, &ids[0]), "the base image was deleted: {o}");

    // --no-prune deletes the image only; its parent, now childless, is dangling.
    let o = build(d, c.path(), &["-t", &tag, "--no-cache"]);
    o.ok();
    let ids = step_ids(&o);
    assert_eq!(ids.len(), 4, "{o}");
    let o = d.cli(&["rmi", "--no-prune", &tag]);
    o.ok();
    assert!(!exists(d, &ids[3]), "{o}");
    assert!(exists(d, &ids[2]), "--no-prune deleted the parent: {o}");
    let dangling = d.cli(&["images", "-q", "--filter", "dangling=true"]);
    assert!(dangling.stdout.contains(&ids[2]), "{dangling}");
    // Deleting that one by id prunes the rest of the chain.
    let o = d.cli(&["rmi", &ids[2]]);
    o.ok();
    assert!(!exists(d, &ids[1]), "{o}");
    assert!(exists(d, &ids[0]), "{o}");
}

/// Serves `body` at any path over HTTP on 127.0.0.1 for `n` requests; returns the port.
fn serve(body: &'static [u8], n: usize) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let path = String::from_utf8_lossy(&buf)
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let resp = if path.contains("missing") {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            } else {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                r.extend_from_slice(body);
                r
            };
            let _ = s.write_all(&resp);
        }
    });
    port
}

#[test]
fn add_from_url() {
    let d = d();
    let tag = unique("b-url");
    let _g = Rmi(d, vec![tag.clone()]);
    let port = serve(b"downloaded\n", 4);
    let df = format!("FROM busybox\nADD http://127.0.0.1:{port}/files/data.txt /srv/\nADD http://127.0.0.1:{port}/x /named\n");
    let c = ctx(&[("Dockerfile", &df)]);
    build(d, c.path(), &["-t", &tag]).ok();
    assert_eq!(
        run(
            d,
            &[
                &tag,
                "sh",
                "-c",
                "cat /srv/data.txt /named; stat -c '%a %Y' /named"
            ]
        ),
        "downloaded\ndownloaded\n600 784887151\n"
    );
    let df = format!("FROM busybox\nADD http://127.0.0.1:{port}/missing /m\n");
    let c = ctx(&[("Dockerfile", &df)]);
    let o = build(d, c.path(), &[]);
    o.fails();
    assert!(o.stderr.contains("404"), "{o}");
}

/// BuildKit's Dockerfile features on the legacy path (the builder is one): RUN --mount
/// (cache persists across builds and its mount point stays out of the image; bind from a
/// stage; tmpfs), COPY --parents and --exclude, the syntax directive, and the refusals.
#[test]
fn buildkit_dockerfile_features_on_the_legacy_path() {
    let d = d();
    let tag = unique("b-bk");
    let _g = Rmi(d, vec![tag.clone()]);
    let id = unique("ctr");
    let df = format!(
        "# syntax=docker/dockerfile:1\nFROM busybox AS src\nRUN mkdir /out && echo from-stage > /out/f\nFROM busybox\nARG N\nRUN --mount=type=cache,id={id},target=/cache echo $N >> /cache/count && wc -l < /cache/count > /count\nRUN --mount=type=bind,from=src,source=/out,target=/mnt cat /mnt/f > /bound\nRUN --mount=type=tmpfs,target=/scratch touch /scratch/x && grep -q ' /scratch tmpfs' /proc/mounts && echo ok > /tmpfs\nCOPY --parents a/./b/*.txt /p/\nCOPY --exclude=*.log --exclude=**/drop2.log dir /e/\n"
    );
    let c = ctx(&[
        ("Dockerfile", &df),
        ("a/b/one.txt", "1"),
        ("a/b/two.txt", "2"),
        ("a/b/skip.md", "x"),
        ("dir/keep.txt", "k"),
        ("dir/drop.log", "d"),
        ("dir/sub/keep2.txt", "k2"),
        ("dir/sub/drop2.log", "d2"),
    ]);
    build(d, c.path(), &["-t", &tag, "--build-arg", "N=1"]).ok();
    assert_eq!(run(d, &[&tag, "cat", "/count"]).trim(), "1");
    // The cache mount kept its file: the second build (a new N, so the step runs) sees it.
    build(d, c.path(), &["-t", &tag, "--build-arg", "N=2"]).ok();
    assert_eq!(run(d, &[&tag, "cat", "/count"]).trim(), "2");
    let out = run(
        d,
        &[
            &tag,
            "sh",
            "-c",
            "test -e /cache && echo cache-in-image; test -e /scratch && echo scratch-in-image; test -e /mnt && echo mnt-in-image; cat /bound /tmpfs; find /p /e | sort",
        ],
    );
    assert_eq!(
        out,
        "from-stage\nok\n/e\n/e/keep.txt\n/e/sub\n/e/sub/keep2.txt\n/p\n/p/b\n/p/b/one.txt\n/p/b/two.txt\n"
    );
    let refused = |df: &str, what: &str| {
        let c = ctx(&[("Dockerfile", df)]);
        let o = build(d, c.path(), &[]);
        o.fails();
        assert!(o.stderr.contains(what), "{o}");
    };
    refused(
        "FROM busybox\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n",
        "secret tok: not found",
    );
    refused(
        "FROM busybox\nRUN --security=insecure true\n",
        "security.insecure is not allowed",
    );
    refused(
        "# syntax=example.com/other/frontend:1\nFROM busybox\n",
        "unsupported frontend",
    );
    refused(
        "FROM busybox\nRUN --mount=type=bogus,target=/x true\n",
        "unsupported mount type",
    );
    // An optional secret that is absent is simply not mounted.
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=tok test ! -e /run/secrets/tok\n",
    )]);
    build(d, c.path(), &[]).ok();
}

#[test]
fn copy_and_workdir_follow_symlinks_inside_the_image() {
    let d = d();
    let tag = unique("b-link");
    let _g = Rmi(d, vec![tag.clone()]);
    let c = ctx(&[
        (
            "Dockerfile",
            "FROM busybox\nRUN mkdir -p /real/dir && ln -s /real/dir /linkdir && ln -s real /rel\nCOPY f.txt /linkdir/\nCOPY f.txt /rel/g.txt\nWORKDIR /linkdir/sub\n",
        ),
        ("f.txt", "F"),
    ]);
    build(d, c.path(), &["-t", &tag]).ok();
    let out = run(
        d,
        &[
            &tag,
            "sh",
            "-c",
            "cat /real/dir/f.txt /real/g.txt; ls -d /real/dir/sub; readlink /linkdir",
        ],
    );
    assert_eq!(out, "FF/real/dir/sub\n/real/dir\n");
}

#[test]
fn metadata_instructions_and_onbuild_triggers() {
    let d = d();
    let (base, child) = (unique("b-meta"), unique("b-onb"));
    let _g = Rmi(d, vec![child.clone(), base.clone()]);
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nMAINTAINER someone@example.com\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo shell-ok > /s.txt\nVOLUME [\"/data\", \"/more\"]\nVOLUME /third\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s --retries=2 CMD true\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"default\"]\nONBUILD RUN echo triggered > /onbuild.txt\n",
    )]);
    build(d, c.path(), &["-t", &base]).ok();
    let f = |t: &str| d.fmt(&base, t);
    assert_eq!(f("{{.Author}}"), "someone@example.com");
    assert_eq!(f("{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    assert_eq!(f("{{.Config.StopSignal}}"), "SIGTERM");
    assert_eq!(
        f("{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}"#
    );
    assert_eq!(
        f("{{json .Config.Entrypoint}} {{json .Config.Cmd}}"),
        r#"["/bin/echo"] ["default"]"#
    );
    assert_eq!(
        f("{{json .Config.OnBuild}}"),
        r#"["RUN echo triggered > /onbuild.txt"]"#
    );
    assert_eq!(
        f("{{json .Config.Volumes}}"),
        r#"{"/data":{},"/more":{},"/third":{}}"#
    );
    assert_eq!(run(d, &[&base]), "default\n");
    // The trigger runs when the image is a base, and is not inherited further.
    let c2 = ctx(&[(
        "Dockerfile",
        &format!("FROM {base}\nCMD [\"/onbuild.txt\"]\n"),
    )]);
    let o = build(d, c2.path(), &["-t", &child]);
    o.ok();
    assert!(o.stdout.contains("# Executing 1 build trigger"), "{o}");
    assert_eq!(
        run(
            d,
            &["--entrypoint", "cat", &child, "/onbuild.txt", "/s.txt"]
        ),
        "triggered\nshell-ok\n"
    );
    assert_eq!(d.fmt(&child, "{{json .Config.OnBuild}}"), "null");
    // POST /build/prune empties the cache index: the same build then runs its steps again.
    let r = d.api("POST", "/build/prune");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["SpaceReclaimed"].is_u64(), "{v}");
    let o = build(d, c.path(), &["-t", &base]);
    assert!(o.stdout.contains("Running in"), "{o}");
}

#[test]
fn tar_context_from_stdin_and_file() {
    let d = d();
    let mut tb = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "Dockerfile",
            &b"FROM busybox\nCOPY in.txt /in.txt\nCMD [\"cat\", \"/in.txt\"]\n"[..],
        ),
        ("in.txt", &b"from-tar\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, name, data).unwrap();
    }
    let tar = tb.into_inner().unwrap();
    let o = d.cli_in(&["build", "-q", "-"], &tar);
    o.ok();
    let id = o.out().to_string();
    assert_eq!(run(d, &[&id]), "from-tar\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ctx.tar");
    std::fs::write(&p, &tar).unwrap();
    let o = d.cli(&["build", "-q", p.to_str().unwrap()]);
    o.ok();
    assert_eq!(o.out(), id, "same context, same cached result");
}

#[test]
fn client_going_away_stops_the_build() {
    let d = d();
    let marker = unique("cancel");
    let c = ctx(&[(
        "Dockerfile",
        &format!("FROM busybox\nRUN sleep 2\nLABEL marker={marker}\n"),
    )]);
    let mut child = d.spawn_cli(&["build", c.path().to_str().unwrap()]).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    child.kill().unwrap();
    let _ = child.wait();
    // The RUN finishes; the step after it never runs.
    std::thread::sleep(Duration::from_millis(3500));
    let o = d.cli(&[
        "images",
        "-a",
        "-q",
        "--filter",
        &format!("label=marker={marker}"),
    ]);
    o.ok();
    assert_eq!(o.out(), "", "{o}");
    // The same build, left alone, does make it.
    build(d, c.path(), &[]).ok();
    let o = d.cli(&[
        "images",
        "-a",
        "-q",
        "--filter",
        &format!("label=marker={marker}"),
    ]);
    assert_ne!(o.out(), "", "{o}");
}

#[test]
fn run_steps_reach_the_network() {
    // Where the host itself reaches the Debian mirror apt uses (CI does: package registries
    // are open).
    let Some((mirror, hostport)) = berth_testkit::debian_mirror() else {
        eprintln!("SKIPPED: apt names no plain-HTTP Debian mirror");
        return;
    };
    let host_can = std::net::ToSocketAddrs::to_socket_addrs(&hostport.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, DEADLINE / 4).is_ok());
    if !host_can {
        eprintln!("SKIPPED: this host does not reach its Debian mirror {mirror}");
        return;
    }
    let d = d();
    let tag = unique("b-net");
    let _g = Rmi(d, vec![tag.clone()]);
    let dockerfile = format!(
        "FROM busybox\nRUN wget -q -O /release {mirror}/dists/bookworm/Release\nCMD [\"head\", \"-n\", \"1\", \"/release\"]\n"
    );
    let c = ctx(&[("Dockerfile", &dockerfile)]);
    build(d, c.path(), &["-t", &tag]).ok();
    assert_eq!(run(d, &[&tag]).trim(), "Origin: Debian");
}

/// `POST /v1.45/build?<query>` with a tar of `files`; the JSON messages.
fn api_build(d: &Daemon, files: &[(&str, &str)], query: &str) -> Vec<Value> {
    let mut tb = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tb.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let tar = tb.into_inner().unwrap();
    let r = d
        .api_with(
            "POST",
            &format!("/v1.45/build?{query}"),
            &[("Content-Type", "application/x-tar")],
            Some(&tar),
        )
        .expect("POST /build");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON message"))
        .collect()
}

fn streams(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| m["stream"].as_str().map(String::from))
        .collect()
}

fn no_error(msgs: &[Value]) {
    assert!(msgs.iter().all(|m| m.get("error").is_none()), "{msgs:?}");
}

#[test]
fn run_output_on_stderr_is_in_the_stream_in_red() {
    let d = d();
    let word = unique("stderr");
    let df = format!(
        "FROM busybox\nRUN sh -c \">&2 echo '{word} to stderr'; echo '{word} to stdout'\"\n"
    );
    let msgs = api_build(d, &[("Dockerfile", &df)], "nocache=1&rm=1");
    no_error(&msgs);
    let s = streams(&msgs);
    // Docker's classic builder wraps each stderr write in red.
    assert!(
        s.contains(&format!("\u{1b}[91m{word} to stderr\n\u{1b}[0m")),
        "{s:?}"
    );
    assert!(s.contains(&format!("{word} to stdout\n")), "{s:?}");
}

#[test]
fn cache_from_limits_the_cache_to_the_images_named() {
    let d = d();
    let tag = unique("cachefrom").to_lowercase();
    let _g = Rmi(d, vec![tag.clone()]);
    let df = format!("FROM busybox\nENV FOO={tag}\nRUN touch baz\nRUN touch bax\n");
    let files = [("Dockerfile", df.as_str())];
    no_error(&api_build(d, &files, &format!("t={tag}")));
    let hits = |q: &str| {
        let msgs = api_build(d, &files, q);
        no_error(&msgs);
        streams(&msgs)
            .iter()
            .filter(|s| s.contains("Using cache"))
            .count()
    };
    let enc = |v: &str| v.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    // Without cache_from: the local cache.
    assert_eq!(hits(""), 3);
    // With it: only steps whose results are the named image or its ancestors.
    assert_eq!(
        hits(&format!("cachefrom={}", enc(&format!("[\"{tag}\"]")))),
        3
    );
    assert_eq!(hits(&format!("cachefrom={}", enc("[\"nosuchtag\"]"))), 0);
    assert_eq!(hits(&format!("cachefrom={}", enc("[\"busybox\"]"))), 0);
}

#[test]
fn dockerignore_in_the_context_removes_the_dockerfile_and_itself() {
    let d = d();
    let tag = unique("dign").to_lowercase();
    let _g = Rmi(d, vec![tag.clone()]);
    // What docker-py sends for a Dockerfile outside the context: it under a generated name,
    // and a .dockerignore naming it.
    let msgs = api_build(
        d,
        &[
            (".dockerfile.5eed", "FROM busybox\nCOPY . /ctx\n"),
            (".dockerignore", ".dockerignore\n.dockerfile.5eed"),
            ("#file.txt", "x"),
            ("a.txt", "a"),
        ],
        &format!("t={tag}&dockerfile=.dockerfile.5eed"),
    );
    no_error(&msgs);
    let out = run(d, &[&tag, "find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = out.lines().collect();
    files.sort();
    assert_eq!(files, ["/ctx/#file.txt", "/ctx/a.txt"], "{out}");
    // Without a pattern for them both stay (and `#` starts a comment only at a line's start).
    let msgs = api_build(
        d,
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx\n"),
            (".dockerignore", "#Dockerfile\nnothing #.dockerignore\n"),
        ],
        &format!("t={tag}"),
    );
    no_error(&msgs);
    let out = run(d, &[&tag, "ls", "-A", "/ctx"]);
    assert_eq!(out, ".dockerignore\nDockerfile\n");
}

#[test]
fn add_host_reaches_run_steps() {
    let d = d();
    let c = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN grep -E '^10\\.1\\.2\\.3\\s+extra\\.host\\.test$' /etc/hosts && ping -c1 -W2 lo.host.test\n",
    )]);
    let o = build(
        d,
        c.path(),
        &[
            "--no-cache",
            "--add-host",
            "extra.host.test:10.1.2.3",
            "--add-host",
            "lo.host.test:127.0.0.1",
        ],
    );
    o.ok();
    // Without the flag the step fails.
    let o = build(d, c.path(), &["--no-cache"]);
    o.fails();
}

/// The pids of processes whose root holds `/<marker>`: a RUN step's, here.
fn step_pids(marker: &str) -> Vec<String> {
    let ps = std::process::Command::new("pgrep")
        .args(["-f", "sleep 3"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/root/{marker}")).is_ok())
        .map(str::to_string)
        .collect()
}

/// A RUN step's container is the builder's own, as in BuildKit: `ps -a`, `info` and
/// `container prune` never see it mid-build (a client counting containers while another's build
/// runs sees a stable number), and one left by a daemon killed mid-build is removed, its
/// process too, when the daemon comes back; so is the build's scratch (`tmp/build-<id>`).
#[test]
fn run_step_containers_are_internal_to_the_build() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let marker = unique("step");
    let c = ctx(&[(
        "Dockerfile",
        &format!("FROM busybox\nRUN touch /{marker} && sleep 3\n"),
    )]);
    let dir = c.path().to_string_lossy().into_owned();
    let mut child = d.spawn_cli(&["build", &dir]).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !step_pids(&marker).is_empty()),
        "the RUN step never started"
    );
    let ps = d.cli(&["ps", "-aq"]);
    ps.ok();
    assert_eq!(ps.out(), "", "ps -a lists the RUN step: {ps}");
    assert_eq!(d.cli(&["info", "--format", "{{.Containers}}"]).out(), "0");
    d.cli(&["container", "prune", "-f"]).ok();
    let status = child.wait().unwrap();
    assert!(status.success(), "the build failed after a prune: {status}");

    // Killed mid-step: the next daemon removes the step and ends its process.
    let mut child = d.spawn_cli(&["build", "--no-cache", &dir]).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !step_pids(&marker).is_empty()),
        "the RUN step never started"
    );
    d.kill9();
    let _ = child.kill();
    let _ = child.wait();
    let scratch = || -> Vec<String> {
        std::fs::read_dir(d.data_root().join("tmp"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        scratch().iter().any(|n| n.starts_with("build-")),
        "the killed build left no context dir to sweep: {:?}",
        scratch()
    );
    d.restart();
    // The startup sweep removed the killed build's scratch (its unpacked context).
    assert_eq!(
        scratch(),
        Vec::<String>::new(),
        "scratch left after restart"
    );
    let containers = d.data_root().join("containers");
    assert!(
        wait_until(DEADLINE, || std::fs::read_dir(&containers)
            .map(|r| r.count() == 0)
            .unwrap_or(false)
            && step_pids(&marker).is_empty()),
        "the step's container or process outlived the daemon restart: {:?}",
        step_pids(&marker)
    );
}

/// `--squash` (experimental, as in dockerd): the target's own layers become one over its FROM
/// image, and the squashed image's files are the same as the unsquashed one's, deletions of the
/// base's files and a directory re-created over a deleted one included.
#[test]
fn squash_merges_the_targets_layers_over_its_base() {
    let d = d();
    // Without --experimental it is refused before any work, with dockerd's words.
    let c = ctx(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let o = build(d, c.path(), &["--squash"]);
    o.fails();
    assert!(
        o.stderr
            .contains("squash is only supported with experimental mode"),
        "{o}"
    );
    assert_eq!(
        d.cli(&["info", "--format", "{{.ExperimentalBuild}}"]).out(),
        "false"
    );

    let e = Daemon::start_with_args(BIN, &["--experimental"]);
    e.load_busybox();
    assert_eq!(
        e.cli(&["info", "--format", "{{.ExperimentalBuild}}"]).out(),
        "true"
    );
    assert_eq!(
        e.cli(&["version", "--format", "{{.Server.Experimental}}"])
            .out(),
        "true"
    );
    let base = ctx(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /base/dir && echo b > /base/dir/f && echo b > /base/file\n",
    )]);
    build(&e, base.path(), &["-t", "sq-base"]).ok();
    let c = ctx(&[(
        "Dockerfile",
        "FROM sq-base\n\
         RUN rm -rf /base/dir && rm /base/file && echo k > /keep\n\
         RUN mkdir /base/dir && echo n > /base/dir/new\n\
         RUN mkdir -p /tmpd/sub && echo 1 > /tmpd/sub/one\n\
         RUN rm -rf /tmpd\n\
         CMD [\"sh\", \"-c\", \"ls -a /base/dir; ls /base; cat /keep; ls /tmpd 2>&1 || true\"]\n",
    )]);
    build(&e, c.path(), &["-t", "sq-plain"]).ok();
    let o = build(&e, c.path(), &["--squash", "-t", "sq-squashed"]);
    o.ok();
    let layers = |img: &str| {
        e.fmt(img, "{{len .RootFS.Layers}}")
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(layers("sq-plain"), layers("sq-base") + 4);
    assert_eq!(layers("sq-squashed"), layers("sq-base") + 1);
    let history = |img: &str| e.cli(&["history", "-q", "--no-trunc", img]).lines().len();
    assert_eq!(history("sq-squashed"), history("sq-plain") + 1);
    let show = |img: &str| {
        let o = e.cli(&["run", "--rm", img]);
        o.ok();
        o.stdout.clone()
    };
    let want = ".\n..\nnew\ndir\nk\nls: /tmpd: No such file or directory\n";
    assert_eq!(show("sq-plain"), want);
    assert_eq!(show("sq-squashed"), want);
}

/// A platform Docker cannot parse is refused before a pull or build starts, with its words.
#[test]
fn unknown_platform_is_refused_up_front() {
    let d = d();
    let c = ctx(&[("Dockerfile", "FROM busybox\n")]);
    let o = build(d, c.path(), &["--platform", "foobar"]);
    o.fails();
    assert!(
        o.stderr
            .contains("\"foobar\": unknown operating system or architecture: invalid argument"),
        "{o}"
    );
    let r = d.api(
        "POST",
        "/v1.45/images/create?fromImage=busybox&tag=latest&platform=foobar",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("unknown operating system"),
        "{}",
        r.text()
    );
}

/// The classic builder's resource options (`docker build --memory … --cgroup-parent …` with
/// `DOCKER_BUILDKIT=0`) reach every RUN step's container, as dockerd applies them.
#[test]
fn legacy_build_resource_options_apply_to_run_steps() {
    let d = d();
    let Some(docker) = berth_testkit::which("docker") else {
        eprintln!("SKIPPED: no `docker` CLI on PATH");
        return;
    };
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("SKIPPED: no cgroup v1 memory hierarchy to read the step's limits from");
        return;
    }
    // Read from inside the step: its own cgroups (v1), its ulimits, its /dev/shm.
    let script = "cg() { p=$(grep -E \":([^:]*,)?$1(,[^:]*)?:\" /proc/self/cgroup | cut -d: -f3); \
                  for f in /sys/fs/cgroup/$1/$2 /sys/fs/cgroup/$1$p/$2; do \
                    if [ -r $f ]; then cat $f; return; fi; done; echo none; }; \
                  echo MEM=$(cg memory memory.limit_in_bytes) SW=$(cg memory memory.memsw.limit_in_bytes) \
                       SHARES=$(cg cpu cpu.shares) QUOTA=$(cg cpu cpu.cfs_quota_us) \
                       PERIOD=$(cg cpu cpu.cfs_period_us) CPUS=$(cg cpuset cpuset.cpus) \
                       NOFILE=$(ulimit -n):$(ulimit -Hn) \
                       SHM=$(df -k /dev/shm | tail -n 1 | awk '{print $2}') \
                       CG=$(grep -E ':([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3)";
    let c = ctx(&[("Dockerfile", &format!("FROM busybox\nRUN {script}\n"))]);
    let tag = unique("b-res");
    let _g = Rmi(d, vec![tag.clone()]);
    let cfg = tempfile::tempdir().unwrap();
    let parent = unique("berth-build-cg");
    let mut cmd = std::process::Command::new(&docker);
    cmd.args([
        "build",
        "--no-cache",
        "--memory",
        "64m",
        "--memory-swap",
        "96m",
        "--cpu-shares",
        "512",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-cpus",
        "0",
        "--ulimit",
        "nofile=1000:2000",
        "--shm-size",
        "80m",
        "--cgroup-parent",
        &parent,
        "-t",
        &tag,
        ".",
    ])
    .current_dir(c.path())
    .env("DOCKER_HOST", d.host())
    .env("DOCKER_CONFIG", cfg.path())
    .env("DOCKER_BUILDKIT", "0")
    .env_remove("DOCKER_CONTEXT")
    .env_remove("DOCKER_API_VERSION");
    let o = berth_testkit::run_with_timeout(cmd, None, Duration::from_secs(120));
    // The parent cgroup is left, empty, as dockerd leaves it.
    for h in [
        "memory",
        "cpu,cpuacct",
        "cpu",
        "cpuset",
        "pids",
        "blkio",
        "devices",
        "freezer",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join(&parent));
    }
    o.ok();
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("MEM="))
        .unwrap_or_else(|| panic!("the step printed nothing: {o}"));
    for want in [
        "MEM=67108864",
        "SW=100663296",
        "SHARES=512",
        "QUOTA=25000",
        "PERIOD=50000",
        "CPUS=0",
        "NOFILE=1000:2000",
        &format!("SHM={}", 80 * 1024),
    ] {
        assert!(line.split(' ').any(|w| w == want), "no {want} in {line}");
    }
    assert!(
        line.contains(&format!("CG=/{parent}/")),
        "not under the cgroup parent {parent}: {line}"
    );
}
