//! A stand-in for `berth daemon`, used only by the testkit's own tests: it answers `/_ping` on
//! its socket, writes a pidfile, mounts a tmpfs under its data root (when it can) and starts a
//! detached "shim" (`sleep`) that it records in `<exec-root>/containers/fake/shim.pid` — the
//! things the harness must clean up.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("daemon") {
        // A CLI stand-in: echo the arguments.
        println!("{}", args.join(" "));
        return;
    }
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(host), Some(data), Some(exec)) = (get("-H"), get("--data-root"), get("--exec-root"))
    else {
        eprintln!("usage: fake-berth daemon -H unix://PATH --data-root DIR --exec-root DIR");
        std::process::exit(2);
    };
    let sock = PathBuf::from(host.trim_start_matches("unix://"));
    let (data, exec) = (PathBuf::from(data), PathBuf::from(exec));
    let shim_dir = exec
        .join("containers")
        .join(format!("fake-{}", std::process::id()));
    let mnt = data.join("mnt").join("inner");
    for d in [&data, &shim_dir, &mnt] {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("mkdir {}: {e}", d.display());
            std::process::exit(1);
        }
    }
    let _ = std::fs::write(exec.join("berth.pid"), std::process::id().to_string());
    let _ = Command::new("mount")
        .args(["-t", "tmpfs", "fake"])
        .arg(&mnt)
        .status();
    let _ = Command::new("mount")
        .args(["-t", "tmpfs", "fake2"])
        .arg(mnt.join(".."))
        .status();
    // A detached "shim" that outlives us.
    if let Ok(child) = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    {
        let _ = std::fs::write(shim_dir.join("shim.pid"), child.id().to_string());
    }
    // And one recorded nowhere, found by its working directory under the temp root.
    let _ = Command::new("sleep")
        .arg("301")
        .current_dir(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {}: {e}", sock.display());
            std::process::exit(1);
        }
    };
    eprintln!("fake-berth listening on {}", sock.display());
    for conn in listener.incoming().flatten() {
        let mut conn = conn;
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..n]);
        let resp = if req.starts_with("GET /_ping") || req.starts_with("HEAD /_ping") {
            "HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nOSType: linux\r\nContent-Length: 2\r\n\r\nOK"
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"message\":\"page not found\"}"
        };
        let _ = conn.write_all(resp.as_bytes());
    }
}
