//! Exec: one more process in a running container.
//!
//! Each exec gets its own shim (`berth shim` in exec mode) in a directory of its own
//! (the engine uses `<exec-root>/exec/<exec id>/`, short enough for a socket path): it joins the container with libcontainer's
//! tenant builder (namespaces of init, the container's cgroup), owns the process's stdio or
//! pty, records its exit status in `exit.json` and serves the same protocol as the container's
//! shim (attach, wait, kill, resize, state). Being detached like the container's shim, an exec
//! outlives a daemon restart, and exec works in containers started by a previous daemon.
//!
//! The process is the container's process with the exec's overrides: the container's user
//! unless `-u`, its env plus `-e`, its cwd unless `-w`, its capabilities (all of them with
//! `--privileged`), rlimits and no_new_privileges. The container's seccomp profile is applied
//! too (not with `--privileged`), by the exec shim's executor right before execve; see
//! `shim::server::SeccompExecutor`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::shim::{launch, ShimOptions, ShimStarted, OPTSFILE, SHIM_LOG};
use crate::RuntimeError;
use berth_fs::write_replace;

pub(crate) const PROCESS_FILE: &str = "process.json";

/// What the user asked `docker exec` for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub tty: bool,
    pub privileged: bool,
    pub attach_stdin: bool,
    pub console_size: Option<(u16, u16)>,
}

/// How the exec shim runs (part of `shim.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecShimOptions {
    /// No seccomp filter (`--privileged`).
    pub privileged: bool,
    /// Keep the process's output in its pipes until the first attach, so a client that
    /// attaches right after the start misses nothing.
    pub hold_output: bool,
}

/// The exec's OCI process, from the container's spec (its bundle's `config.json`).
pub fn exec_process(spec: &Value, cfg: &ExecConfig) -> Result<Value, RuntimeError> {
    if cfg.cmd.is_empty() {
        return Err(RuntimeError::Spec("No exec command specified".into()));
    }
    let base = &spec["process"];
    let rootfs = PathBuf::from(spec["root"]["path"].as_str().unwrap_or(""));
    let mut process = base.clone();
    if !process.is_object() {
        return Err(RuntimeError::Spec("container spec has no process".into()));
    }
    let mut env: Vec<String> = base["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !cfg.user.is_empty() {
        let user = crate::user::resolve_user(&rootfs, &cfg.user)?;
        process["user"] =
            json!({ "uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids });
        // HOME follows the exec's user unless the container set one explicitly.
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={}", user.home));
    }
    if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for kv in &cfg.env {
        if kv.contains('=') {
            crate::spec::set_env(&mut env, kv.clone());
        } else {
            // `-e NAME` without a value removes nothing and sets nothing here: the CLI
            // resolves it from its own environment before sending.
            env.retain(|e| e.split('=').next() != Some(kv.as_str()));
        }
    }
    let cwd = if cfg.working_dir.is_empty() {
        base["cwd"].as_str().unwrap_or("/").to_string()
    } else {
        cfg.working_dir.clone()
    };
    if !cwd.starts_with('/') {
        return Err(RuntimeError::Spec(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    crate::spec::resolve_executable(&rootfs, &cfg.cmd[0], &env)?;
    process["args"] = json!(cfg.cmd);
    process["env"] = json!(env);
    process["cwd"] = json!(cwd);
    process["terminal"] = json!(cfg.tty);
    match (cfg.tty, cfg.console_size) {
        (true, Some((h, w))) if h > 0 && w > 0 => {
            process["consoleSize"] = json!({"height": h, "width": w})
        }
        (true, _) => process["consoleSize"] = json!({"height": 24, "width": 80}),
        (false, _) => {
            if let Some(o) = process.as_object_mut() {
                o.remove("consoleSize");
            }
        }
    }
    if cfg.privileged {
        let all = crate::spec::own_bounding_set();
        process["capabilities"] = json!({
            "bounding": all, "effective": all, "permitted": all,
        });
    }
    Ok(process)
}

/// Starts an exec shim for the running container `container_id` and blocks until the process
/// runs (or failed to). Call from `spawn_blocking` in async code.
pub fn spawn_exec(
    berth_exe: &Path,
    container_id: &str,
    state_root: &Path,
    container_runtime_dir: &Path,
    dir: &Path,
    cfg: &ExecConfig,
    hold_output: bool,
) -> Result<ShimStarted, RuntimeError> {
    let spec: Value = fs::read(container_runtime_dir.join("config.json"))
        .map_err(|e| RuntimeError::io("read container spec", e))
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| RuntimeError::Spec(e.to_string())))?;
    let process = exec_process(&spec, cfg)?;
    fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create exec dir", e))?;
    let process_json =
        serde_json::to_vec(&process).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    write_replace(&dir.join(PROCESS_FILE), &process_json)
        .map_err(|e| RuntimeError::io("write process.json", e))?;
    let opts = ShimOptions {
        id: container_id.to_string(),
        bundle: container_runtime_dir.to_path_buf(),
        state_root: state_root.to_path_buf(),
        runtime_dir: dir.to_path_buf(),
        log_path: PathBuf::new(),
        log_max_size: 0,
        log_max_file: 0,
        tty: cfg.tty,
        open_stdin: cfg.attach_stdin,
        // Docker: an exec's stdin closes when its attachment's stdin ends.
        stdin_once: true,
        log_format: Default::default(),
        exec: Some(ExecShimOptions {
            privileged: cfg.privileged,
            hold_output,
        }),
    };
    let opts_json = serde_json::to_vec(&opts).map_err(|e| RuntimeError::Shim(e.to_string()))?;
    write_replace(&dir.join(OPTSFILE), &opts_json)
        .map_err(|e| RuntimeError::io("write shim.json", e))?;
    match launch(berth_exe, dir)? {
        Ok(s) => Ok(s),
        Err(Some((message, fault))) => {
            let _ = fs::remove_dir_all(dir);
            Err(RuntimeError::Exec { message, fault })
        }
        Err(None) => {
            let log = fs::read_to_string(dir.join(SHIM_LOG)).unwrap_or_default();
            let _ = fs::remove_dir_all(dir);
            Err(RuntimeError::Shim(format!(
                "exec shim exited before starting the process: {}",
                log.trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rootfs: &Path) -> Value {
        json!({
            "root": {"path": rootfs},
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": ["sleep", "100"],
                "env": ["PATH=/bin", "HOME=/root", "A=1"],
                "cwd": "/",
                "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
                "noNewPrivileges": true
            }
        })
    }

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("bin")).expect("bin");
        fs::create_dir_all(t.path().join("etc")).expect("etc");
        fs::write(t.path().join("bin/sh"), b"").expect("sh");
        fs::set_permissions(
            t.path().join("bin/sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\npostgres:x:70:70::/var/lib/postgres:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(t.path().join("etc/group"), "root:x:0:\npostgres:x:70:\n").expect("group");
        t
    }

    #[test]
    fn exec_process_applies_overrides_over_the_container() {
        let r = rootfs();
        let cfg = ExecConfig {
            cmd: vec!["sh".into(), "-c".into(), "id".into()],
            env: vec!["A=2".into(), "B=3".into()],
            user: "postgres".into(),
            working_dir: "/tmp".into(),
            tty: true,
            ..Default::default()
        };
        let p = exec_process(&spec(r.path()), &cfg).expect("process");
        assert_eq!(p["args"], json!(["sh", "-c", "id"]));
        assert_eq!(p["user"]["uid"], 70);
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(p["terminal"], true);
        assert_eq!(p["noNewPrivileges"], true);
        let env: Vec<&str> = p["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(env.contains(&"A=2") && env.contains(&"B=3") && env.contains(&"TERM=xterm"));
        assert!(env.contains(&"HOME=/var/lib/postgres"));
        assert!(!env.contains(&"A=1"));
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_CHOWN"]));
    }

    #[test]
    fn exec_process_errors_in_dockers_words() {
        let r = rootfs();
        let mut cfg = ExecConfig {
            cmd: vec!["nosuch".into()],
            ..Default::default()
        };
        let e = exec_process(&spec(r.path()), &cfg).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        cfg.cmd = vec!["sh".into()];
        cfg.user = "ghost".into();
        let e = exec_process(&spec(r.path()), &cfg).expect_err("user");
        assert!(e.to_string().contains("unable to find user ghost"));
        cfg.user.clear();
        cfg.working_dir = "rel".into();
        assert!(exec_process(&spec(r.path()), &cfg).is_err());
        cfg.working_dir.clear();
        cfg.privileged = true;
        let p = exec_process(&spec(r.path()), &cfg).expect("privileged");
        assert!(
            p["capabilities"]["bounding"]
                .as_array()
                .map(|a| a.len() > 1)
                .unwrap_or(false),
            "privileged exec gets every capability"
        );
    }
}
