//! Offline stand-ins of the images Kubernetes' `critest` (cri-tools v1.32) runs, under their
//! real names, for a local registry to serve through a per-registry mirror:
//!
//! - `registry.k8s.io/e2e-test-images/busybox:1.29-2`: Debian's static busybox plus the host's
//!   `pgrep` (procps) and `ipcs` (util-linux) with their libraries, which that busybox lacks;
//!   users `nobody` and `www-data`.
//! - `.../nginx:1.14-2`, `gcr.io/k8s-staging-cri-tools/hostnet-nginx-<arch>` (port 12003) and
//!   `.../httpd:2.4.39-4`: busybox plus `tests/fixtures/cri/webserver.c` playing nginx (its pid
//!   file and "master process" title) or httpd (its start-up log).
//! - `.../nonewprivs:1.3`: a set-uid root program printing its effective uid.
//! - `registry.k8s.io/pause:3.6`: for the containerd baseline (`tests/fixtures/cri/pause.c`).
//! - `gcr.io/k8s-staging-cri-tools/test-image-*`: busybox with the users and tags the image
//!   specs check (`test-image-digest@sha256:9700…` cannot be made: its digest is the real one).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::image::{busybox_layer, sha256_hex, Image, Layer, DEFAULT_PATH};
use crate::Error;

pub const E2E: &str = "registry.k8s.io/e2e-test-images";
pub const CRI_TOOLS: &str = "gcr.io/k8s-staging-cri-tools";
pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

const WEBSERVER_C: &str = include_str!("../../../tests/fixtures/cri/webserver.c");
const NONEWPRIVS_C: &str = include_str!("../../../tests/fixtures/cri/nonewprivs.c");
const PAUSE_C: &str = include_str!("../../../tests/fixtures/cri/pause.c");
/// containerd 1.6's sandbox image (the baseline's; Berth needs none).
pub const PAUSE: &str = "registry.k8s.io/pause:3.6";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
const GROUP: &str = "root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
";

/// Compiles a fixture (musl-gcc, else gcc; static) into `cache_dir`, once per source digest.
fn compile(cache_dir: &Path, name: &str, src: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| Error::new(format!("mkdir {}: {e}", cache_dir.display())))?;
    let key = &sha256_hex(src.as_bytes())[..16];
    let out = cache_dir.join(format!("{name}-{key}"));
    if out.exists() {
        return Ok(out);
    }
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let c_file = cache_dir.join(format!("{name}-{key}-{tag}.c"));
    let tmp = cache_dir.join(format!("{name}-{key}-{tag}.tmp"));
    std::fs::write(&c_file, src)
        .map_err(|e| Error::new(format!("write {}: {e}", c_file.display())))?;
    let mut errors = String::new();
    for cc in ["musl-gcc", "gcc"] {
        match Command::new(cc)
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&tmp)
            .arg(&c_file)
            .output()
        {
            Ok(o) if o.status.success() => {
                let _ = std::fs::remove_file(&c_file);
                std::fs::rename(&tmp, &out)
                    .map_err(|e| Error::new(format!("rename {}: {e}", out.display())))?;
                return Ok(out);
            }
            Ok(o) => errors.push_str(&format!("{cc}: {}\n", String::from_utf8_lossy(&o.stderr))),
            Err(e) => errors.push_str(&format!("{cc}: {e}\n")),
        }
    }
    let _ = std::fs::remove_file(&c_file);
    Err(Error::new(format!(
        "cannot compile {name} (apt-get install musl-tools):\n{errors}"
    )))
}

fn read(p: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::new(format!("read {}: {e}", p.display())))
}

/// A host program (at `dest` in the layer) and the shared libraries `ldd` names for it, at
/// their paths.
fn host_program(l: &mut Layer, path: &str, dest: &str) -> Result<(), Error> {
    let out = Command::new("ldd")
        .arg(path)
        .output()
        .map_err(|e| Error::new(format!("ldd {path}: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "ldd {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    l.file(dest.trim_start_matches('/'), 0o755, read(Path::new(path))?);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let lib = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(lib) = lib.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let real = std::fs::canonicalize(lib).unwrap_or_else(|_| PathBuf::from(lib));
        l.file(lib.trim_start_matches('/'), 0o755, read(&real)?);
    }
    Ok(())
}

/// busybox with `pgrep` and `ipcs`, and the users critest names. Its applets are hard links, as
/// in the real image, so masking one (`MaskedPaths: ["/bin/ls"]`) leaves the others alone —
/// those that sort after `bin/busybox` (a link must follow its target in the layer's tar; the
/// few before it stay symbolic links).
pub fn busybox_plus() -> Result<Layer, Error> {
    let mut l = busybox_layer()?;
    let bb = crate::image::busybox_path()?;
    let list = Command::new(&bb)
        .arg("--list")
        .output()
        .map_err(|e| Error::new(format!("{} --list: {e}", bb.display())))?;
    for name in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
        let path = format!("bin/{name}");
        if !name.contains('/') && path.as_str() > "bin/busybox" {
            l.hardlink(&path, "bin/busybox");
        }
    }
    l.hardlink("bin/sh", "bin/busybox");
    for d in ["lib", "lib64", "usr/lib", "var", "var/run", "var/www"] {
        l.dir(d, 0o755);
    }
    host_program(&mut l, "/usr/bin/pgrep", "/usr/bin/pgrep")?;
    host_program(&mut l, "/usr/bin/ipcs", "/usr/bin/ipcs")?;
    // Debian's static busybox runs applets inside its shell without exec ("standalone shell"):
    // a masked /bin/ls would still run. A busybox built without that (Debian's `busybox`
    // package, $BERTH_CRI_SH; tests/cri/critest.sh fetches it) is the shell then.
    if let Some(sh) = std::env::var_os("BERTH_CRI_SH") {
        let sh = sh.to_string_lossy().into_owned();
        host_program(&mut l, &sh, "/bin/sh")?;
    }
    l.file("etc/passwd", 0o644, PASSWD);
    l.file("etc/group", 0o644, GROUP);
    Ok(l)
}

/// An image of its own (a label naming it keeps stand-ins with the same layers apart, as the
/// real images are).
fn image(name: &str, mut config: serde_json::Value, layers: &[(&str, &Layer)]) -> Image {
    config["Labels"] = json!({"berth.test.stand-in": name});
    let mut img = Image::new(name, config);
    for (by, l) in layers {
        img = img.layer(by, l);
    }
    img
}

fn busybox_config() -> serde_json::Value {
    json!({"Env": [DEFAULT_PATH], "Cmd": ["sh"]})
}

/// Every stand-in image, under its real names.
pub fn images(cache_dir: &Path) -> Result<Vec<Image>, Error> {
    let base = busybox_plus()?;
    let bb = ("ADD busybox rootfs, pgrep, ipcs", &base);
    let ws = read(&compile(cache_dir, "webserver", WEBSERVER_C)?)?;
    let nnp = read(&compile(cache_dir, "nonewprivs", NONEWPRIVS_C)?)?;
    let mut pause = Layer::new();
    pause.file(
        "pause",
        0o755,
        read(&compile(cache_dir, "pause", PAUSE_C)?)?,
    );
    let mut nginx = Layer::new();
    nginx
        .dir("usr/sbin", 0o755)
        .file("usr/sbin/nginx", 0o755, ws.clone());
    let mut httpd = Layer::new();
    httpd
        .dir("usr/local/bin", 0o755)
        .file("usr/local/bin/httpd", 0o755, ws);
    let mut nonewprivs = Layer::new();
    nonewprivs
        .dir("usr/local/bin", 0o755)
        .file_owned("usr/local/bin/nnp", 0o4755, 0, 0, nnp);
    let mut predefined = Layer::new();
    predefined
        .file(
            "etc/passwd",
            0o644,
            format!("{PASSWD}user-defined-in-image:x:1000:1000::/home/user:/bin/sh\n"),
        )
        .file(
            "etc/group",
            0o644,
            format!("{GROUP}user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"),
        );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut out = vec![
        image(BUSYBOX, busybox_config(), &[bb]),
        image(
            PAUSE,
            json!({"Env": [DEFAULT_PATH], "Entrypoint": ["/pause"]}),
            &[("ADD pause", &pause)],
        ),
        image(
            &format!("{E2E}/nginx:1.14-2"),
            json!({"Env": [DEFAULT_PATH], "Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}}),
            &[bb, ("COPY nginx", &nginx)],
        ),
        image(
            &format!("{CRI_TOOLS}/hostnet-nginx-{arch}:latest"),
            json!({"Env": [DEFAULT_PATH, "PORT=12003"], "Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"12003/tcp": {}}}),
            &[bb, ("COPY nginx", &nginx)],
        ),
        image(
            &format!("{E2E}/httpd:2.4.39-4"),
            json!({"Env": [DEFAULT_PATH], "Cmd": ["httpd-foreground"], "Entrypoint": ["/usr/local/bin/httpd"], "ExposedPorts": {"80/tcp": {}}}),
            &[bb, ("COPY httpd", &httpd)],
        ),
        image(
            &format!("{E2E}/nonewprivs:1.3"),
            json!({"Env": [DEFAULT_PATH], "Entrypoint": ["/usr/local/bin/nnp"]}),
            &[bb, ("COPY nnp", &nonewprivs)],
        ),
        image(
            &format!("{CRI_TOOLS}/test-image-predefined-group:latest"),
            json!({"Env": [DEFAULT_PATH], "Cmd": ["sh"], "User": "1000"}),
            &[bb, ("ADD users", &predefined)],
        ),
    ];
    for (name, user) in [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1003"),
        ("test-image-user-username-group", "www-data:www-data"),
    ] {
        out.push(image(
            &format!("{CRI_TOOLS}/{name}:latest"),
            json!({"Env": [DEFAULT_PATH], "Cmd": ["sh"], "User": user}),
            &[bb],
        ));
    }
    for names in [
        &["test-image-latest:latest"][..],
        &["test-image-tag:test", "test-image-tag:all"],
        &[
            "test-image-tags:1",
            "test-image-tags:2",
            "test-image-tags:3",
        ],
    ] {
        let mut img = image(
            &format!("{CRI_TOOLS}/{}", names[0]),
            busybox_config(),
            &[bb],
        );
        img.repo_tags = names.iter().map(|n| format!("{CRI_TOOLS}/{n}")).collect();
        out.push(img);
    }
    // Three different images: one file each makes them so.
    for n in 1..=3 {
        let mut l = Layer::new();
        l.file("image-number", 0o644, format!("{n}\n"));
        out.push(image(
            &format!("{CRI_TOOLS}/test-image-{n}:latest"),
            busybox_config(),
            &[bb, ("ADD image-number", &l)],
        ));
    }
    Ok(out)
}

/// `registry/path:tag` -> (registry host, `path:tag`).
pub fn split_registry(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("docker.io", name))
}

/// Writes `<dir>/<registry>/hosts.toml` sending the stand-ins' registries to `mirror`
/// (`http://127.0.0.1:PORT`), for Berth's `--registry-config-path` and containerd's
/// `config_path` alike.
pub fn write_hosts_toml(dir: &Path, mirror: &str) -> Result<(), Error> {
    for reg in ["registry.k8s.io", "gcr.io"] {
        let d = dir.join(reg);
        std::fs::create_dir_all(&d)
            .map_err(|e| Error::new(format!("mkdir {}: {e}", d.display())))?;
        let text = format!(
            "server = \"https://{reg}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(d.join("hosts.toml"), text)
            .map_err(|e| Error::new(format!("write hosts.toml: {e}")))?;
    }
    Ok(())
}
