//! Commands that stream: create/run/start/attach (hijacked attach, wait, exit codes) and logs.

use std::io::Write;
use std::sync::Arc;

use berth_api::endpoints::AttachOptions;
use berth_api::stdcopy::{Demuxer, StreamKind};
use berth_api::types::{ContainerLogsQuery, ContainerWaitResponse};
use berth_api::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{AttachArgs, CreateArgs, ExecArgs, LogsArgs, RunArgs, StartArgs};
use crate::cmd_image::pull_image;
use crate::error::CliError;
use crate::opts::{parse_timestamp, ContainerOpts};
use crate::term;

/// docker's exit code for a failed start: 127 command not found, 126 not executable, else 125.
pub fn start_error_code(msg: &str) -> i32 {
    let m = msg.trim_start_matches("Error response from daemon: ");
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("system cannot find the file specified")
    {
        127
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("cannot execute")
    {
        126
    } else {
        125
    }
}

fn image_ref_for_message(image: &str) -> String {
    let (repo, tag) = crate::cmd_image::pull_params(image);
    match tag {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    }
}

/// Create the container (pulling the image when missing, per `--pull`); returns its id.
async fn create_container(
    c: &Client,
    opts: &ContainerOpts,
    args: &[String],
    detach: bool,
    quiet: bool,
) -> Result<String, CliError> {
    let (image, cmd) = args
        .split_first()
        .ok_or_else(|| CliError::Usage("requires at least 1 argument".into()))?;
    // Options stop at the image; a dash-word in its place is an option we don't know.
    if image.starts_with('-') && image.len() > 1 {
        let flag = image.split('=').next().unwrap_or(image);
        return Err(CliError::Usage(format!("unknown flag: {flag}")));
    }
    if opts.tty && !term::stdin_is_tty() && opts.interactive && !detach {
        // docker refuses -it when stdin is not a terminal.
        return Err(CliError::msg("the input device is not a TTY"));
    }
    let body = opts.to_create_body(image, cmd, detach)?;
    if let Some(f) = &opts.cidfile {
        if std::path::Path::new(f).exists() {
            return Err(CliError::msg(format!(
                "container ID file found, make sure the other container isn't running or delete {f}"
            )));
        }
    }
    let platform = opts.platform.as_deref();
    match opts.pull.as_str() {
        "always" => pull_image(c, image, platform, quiet, true).await?,
        "missing" | "never" => {}
        other => {
            return Err(CliError::Usage(format!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        )))
        }
    }
    let resp = match c
        .container_create(opts.name.as_deref(), platform, &body)
        .await
    {
        Ok(r) => r,
        Err(e)
            if e.is_not_found()
                && opts.pull == "missing"
                && e.daemon_message()
                    .is_some_and(|m| m.to_lowercase().contains("no such image")) =>
        {
            eprintln!(
                "Unable to find image '{}' locally",
                image_ref_for_message(image)
            );
            pull_image(c, image, platform, quiet, true).await?;
            c.container_create(opts.name.as_deref(), platform, &body)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    for w in &resp.warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(f) = &opts.cidfile {
        std::fs::write(f, &resp.id).map_err(|e| {
            CliError::msg(format!("failed to write the container ID to the file: {e}"))
        })?;
    }
    Ok(resp.id)
}

pub async fn create(c: Arc<Client>, a: CreateArgs) -> Result<i32, CliError> {
    let id = create_container(&c, &a.opts, &a.args, true, a.quiet).await?;
    println!("{id}");
    Ok(0)
}

/// Streams to attach and how.
struct AttachPlan {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    sig_proxy: bool,
    detach_keys: Option<String>,
}

/// Attach (hijacked), register the wait, start (when `start`), pump the streams, and return the
/// container's exit code. `cmd` names the command for error messages.
async fn attach_and_wait(
    c: Arc<Client>,
    id: &str,
    plan: AttachPlan,
    start: bool,
    condition: Option<&str>,
    cmd: &str,
) -> Result<i32, CliError> {
    let any = plan.stdin || plan.stdout || plan.stderr;
    let hijacked = if any {
        Some(
            c.container_attach(
                id,
                &AttachOptions {
                    stdin: plan.stdin,
                    stdout: plan.stdout,
                    stderr: plan.stderr,
                    logs: false,
                    detach_keys: plan.detach_keys.clone(),
                },
            )
            .await?,
        )
    } else {
        None
    };
    let mut waiter = c.container_wait_early(id, condition).await?;
    waiter.headers(std::time::Duration::from_secs(2)).await?;

    if start {
        if let Err(e) = c.container_start(id).await {
            if e.status() != Some(304) {
                eprintln!("berth: {e}\n\nRun 'berth {cmd} --help' for more information");
                if condition == Some("removed") {
                    // --rm: a container that never ran is not left behind.
                    let _ = c.container_remove(id, true, true, false).await;
                }
                return Err(CliError::Exit(start_error_code(&e.to_string())));
            }
        }
    }

    let _raw = if plan.tty && plan.stdin {
        term::RawMode::enable()
    } else {
        None
    };
    if plan.tty {
        if let Some((h, w)) = term::size() {
            let _ = c.container_resize(id, h, w).await;
        }
        spawn_resize_on_winch(c.clone(), id.to_string());
    } else if plan.sig_proxy {
        spawn_signal_proxy(c.clone(), id.to_string());
    }

    if let Some(h) = hijacked {
        if pump(h, plan.stdin, plan.tty, plan.detach_keys.as_deref()).await? {
            // Detached: the container keeps running; there is no exit code to wait for.
            return Ok(0);
        }
    }
    drop(_raw);
    let w: ContainerWaitResponse = waiter.finish_json().await?;
    if let Some(e) = w.error.filter(|e| !e.message.is_empty()) {
        eprintln!("berth: {}", e.message);
        return Ok(125);
    }
    Ok(w.status_code as i32)
}

/// Copy a hijacked stream to stdout/stderr (demultiplexed unless `tty`) and, with `stdin`, our
/// stdin to it. Returns true when the user typed the detach sequence.
async fn pump(
    h: berth_api::client::Hijacked,
    stdin: bool,
    tty: bool,
    detach_keys: Option<&str>,
) -> Result<bool, CliError> {
    let (mut rd, mut wr) = tokio::io::split(h);
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    if stdin {
        let keys = crate::detach::parse_keys(detach_keys.unwrap_or(crate::detach::DEFAULT_KEYS))
            .map_err(CliError::Usage)?;
        tokio::spawn(async move {
            let mut matcher = crate::detach::EscapeMatcher::new(keys);
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (fwd, detached) = matcher.feed(&buf[..n]);
                        if !fwd.is_empty() && wr.write_all(&fwd).await.is_err() {
                            return;
                        }
                        let _ = wr.flush().await;
                        if detached {
                            let _ = detach_tx.send(());
                            return;
                        }
                    }
                }
            }
            // EOF on our stdin closes the container's stdin.
            let _ = wr.shutdown().await;
        });
    } else {
        drop(detach_tx);
    }
    let mut demux = Demuxer::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut raw = tty;
    let mut detach_open = true;
    loop {
        let read = tokio::select! {
            r = rd.read(&mut buf) => r,
            d = &mut detach_rx, if detach_open => {
                if d.is_ok() {
                    return Ok(true);
                }
                detach_open = false;
                continue;
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            // The daemon closing the connection abruptly still means the stream ended.
            Err(_) => break,
        };
        if raw {
            write_out(StreamKind::Stdout, &buf[..n]);
            continue;
        }
        demux.push(&buf[..n]);
        loop {
            match demux.next_frame() {
                Ok(Some((kind, data))) => write_out(kind, &data),
                Ok(None) => break,
                Err(_) => {
                    // Not multiplexed after all (an old daemon): pass the rest through raw.
                    raw = true;
                    write_out(StreamKind::Stdout, &demux.take_pending());
                    break;
                }
            }
        }
    }
    Ok(false)
}

/// `exec`: run a command in a running container.
pub async fn exec(c: Arc<Client>, a: ExecArgs) -> Result<i32, CliError> {
    let (container, cmd) = a
        .args
        .split_first()
        .ok_or_else(|| CliError::Usage("requires at least 2 arguments".into()))?;
    if cmd.is_empty() {
        return Err(CliError::Usage("requires at least 2 arguments".into()));
    }
    if a.tty && a.interactive && !a.detach && !term::stdin_is_tty() {
        return Err(CliError::msg("the input device is not a TTY"));
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(crate::opts::read_kv_file(f, true)?);
    }
    env.extend(a.env.iter().filter_map(|e| crate::opts::env_entry(e)));
    let size = if a.tty { term::size() } else { None };
    let cfg = berth_api::types::ExecConfig {
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        console_size: size.map(|(h, w)| [h as u64, w as u64]),
        detach_keys: a.detach_keys.clone().unwrap_or_default(),
        tty: a.tty,
        env: (!env.is_empty()).then_some(env),
        cmd: Some(cmd.to_vec()),
        privileged: a.privileged,
        user: a.user.clone().unwrap_or_default(),
        working_dir: a.workdir.clone().unwrap_or_default(),
    };
    let exec_id = c.exec_create(container, &cfg).await?;
    if a.detach {
        c.exec_start_detached(&exec_id).await?;
        return Ok(0);
    }
    let start = berth_api::types::ExecStartConfig {
        detach: false,
        tty: a.tty,
        console_size: cfg.console_size,
    };
    let h = match c.exec_start_attached(&exec_id, &start).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return Ok(match start_error_code(&e.to_string()) {
                125 => 1,
                code => code,
            });
        }
    };
    let _raw = if a.tty && a.interactive {
        term::RawMode::enable()
    } else {
        None
    };
    if a.tty {
        if let Some((h, w)) = size {
            let _ = c.exec_resize(&exec_id, h, w).await;
        }
    }
    if pump(h, a.interactive, a.tty, a.detach_keys.as_deref()).await? {
        return Ok(0);
    }
    drop(_raw);
    // The stream can end a moment before the daemon records the exit code.
    for _ in 0..50 {
        let i = c.exec_inspect(&exec_id).await?;
        if !i.running {
            return Ok(i.exit_code.unwrap_or(0) as i32);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(0)
}

fn write_out(kind: StreamKind, data: &[u8]) {
    match kind {
        StreamKind::Stderr | StreamKind::SystemErr => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(data);
            let _ = e.flush();
        }
        _ => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(data);
            let _ = o.flush();
        }
    }
}

fn spawn_resize_on_winch(c: Arc<Client>, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut s) = signal(SignalKind::window_change()) else {
            return;
        };
        while s.recv().await.is_some() {
            if let Some((h, w)) = term::size() {
                let _ = c.container_resize(&id, h, w).await;
            }
        }
    });
}

/// Forward the usual termination signals to the container, as docker's `--sig-proxy` does.
fn spawn_signal_proxy(c: Arc<Client>, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let Ok(mut s) = signal(kind) else {
                return;
            };
            while s.recv().await.is_some() {
                let _ = c.container_kill(&id, Some(name)).await;
            }
        });
    }
}

pub async fn run(c: Arc<Client>, a: RunArgs) -> Result<i32, CliError> {
    let id = create_container(&c, &a.opts, &a.args, a.detach, a.quiet).await?;
    if a.detach {
        if let Err(e) = c.container_start(&id).await {
            eprintln!("berth: {e}\n\nRun 'berth run --help' for more information");
            return Ok(start_error_code(&e.to_string()));
        }
        println!("{id}");
        return Ok(0);
    }
    let (mut sin, mut sout, mut serr) = (a.opts.interactive, true, true);
    if !a.opts.attach.is_empty() {
        sin = a
            .opts
            .attach
            .iter()
            .any(|s| s.eq_ignore_ascii_case("stdin"));
        sout = a
            .opts
            .attach
            .iter()
            .any(|s| s.eq_ignore_ascii_case("stdout"));
        serr = a
            .opts
            .attach
            .iter()
            .any(|s| s.eq_ignore_ascii_case("stderr"));
    }
    let plan = AttachPlan {
        stdin: sin,
        stdout: sout,
        stderr: serr,
        tty: a.opts.tty,
        sig_proxy: a.sig_proxy,
        detach_keys: a.detach_keys.clone(),
    };
    let condition = if a.opts.rm { "removed" } else { "next-exit" };
    attach_and_wait(c, &id, plan, true, Some(condition), "run").await
}

pub async fn start(c: Arc<Client>, a: StartArgs) -> Result<i32, CliError> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(CliError::msg(
                "you cannot start and attach multiple containers at once",
            ));
        }
        let name = &a.containers[0];
        let info = c.container_inspect(name, false).await?;
        let plan = AttachPlan {
            stdin: a.interactive && info.config.open_stdin,
            stdout: true,
            stderr: true,
            tty: info.config.tty,
            sig_proxy: true,
            detach_keys: a.detach_keys.clone(),
        };
        return attach_and_wait(c, &info.id, plan, true, Some("next-exit"), "start").await;
    }
    let mut failed = Vec::new();
    for n in &a.containers {
        match c.container_start(n).await {
            Ok(()) => println!("{n}"),
            Err(e) if e.status() == Some(304) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!("Error: failed to start containers: {}", failed.join(", "));
        Ok(1)
    }
}

pub async fn attach(c: Arc<Client>, a: AttachArgs) -> Result<i32, CliError> {
    let info = c.container_inspect(&a.container, false).await?;
    if !info.state.running {
        return Err(CliError::msg(
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if info.state.paused {
        return Err(CliError::msg(
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let plan = AttachPlan {
        stdin: !a.no_stdin && info.config.open_stdin,
        stdout: true,
        stderr: true,
        tty: info.config.tty,
        sig_proxy: a.sig_proxy,
        detach_keys: a.detach_keys.clone(),
    };
    attach_and_wait(c, &info.id, plan, false, None, "attach").await
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<i32, CliError> {
    let info = c.container_inspect(&a.container, false).await?;
    let now = chrono::Utc::now();
    let q = ContainerLogsQuery {
        follow: a.follow,
        stdout: true,
        stderr: true,
        since: a
            .since
            .as_deref()
            .map(|s| parse_timestamp(s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_timestamp(s, now))
            .transpose()?,
        timestamps: a.timestamps,
        tail: Some(a.tail.clone()),
    };
    let mut resp = c.container_logs(&info.id, &q).await?;
    let mut demux = Demuxer::new();
    let raw = info.config.tty;
    while let Some(chunk) = resp.chunk().await? {
        if raw {
            write_out(StreamKind::Stdout, &chunk);
            continue;
        }
        demux.push(&chunk);
        loop {
            match demux.next_frame() {
                Ok(Some((k, d))) => write_out(k, &d),
                Ok(None) => break,
                Err(b) => return Err(CliError::msg(format!("Unrecognized input header: {}", b.0))),
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_error_exit_codes() {
        assert_eq!(start_error_code("Error response from daemon: failed to create task: exec: \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(
            start_error_code("exec /bin/x: no such file or directory"),
            127
        );
        assert_eq!(start_error_code("exec /etc: permission denied"), 126);
        assert_eq!(start_error_code("cannot execute binary file"), 126);
        assert_eq!(
            start_error_code("driver failed programming external connectivity"),
            125
        );
    }
}
