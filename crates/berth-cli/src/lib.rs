//! berth-cli: the docker-compatible command line. Talks to the daemon only through `berth-api`.

pub mod auth;
pub mod cli;
mod cmd_build;
mod cmd_container;
mod cmd_cp;
mod cmd_events;
mod cmd_image;
pub mod cmd_network;
mod cmd_ops;
mod cmd_prune;
mod cmd_run;
mod cmd_system;
pub mod cmd_volume;
pub mod detach;
pub mod error;
pub mod format;
pub mod generate;
pub mod opts;
pub mod progress;
pub mod slip;
pub mod template;
pub mod term;
pub mod value;

use std::ffi::OsString;
use std::sync::Arc;

use berth_api::Client;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::cli::{Cli, Cmd};
use crate::error::CliError;

/// The default daemon address.
pub const DEFAULT_HOST: &str = berth_api::client::DEFAULT_HOST;

/// The version line of `berth --version`: Berth's version, the git commit it was built from
/// (when the build could tell) and the Engine API version it speaks.
pub fn version_line() -> String {
    match option_env!("BERTH_GIT_COMMIT") {
        Some(c) if !c.is_empty() => format!(
            "Berth version {}, build {c}, API version {}",
            env!("CARGO_PKG_VERSION"),
            berth_api::API_VERSION
        ),
        _ => format!(
            "Berth version {}, API version {}",
            env!("CARGO_PKG_VERSION"),
            berth_api::API_VERSION
        ),
    }
}

/// Run the CLI with `args` (including the program name); returns the process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    run_with(args, Cli::command)
}

/// As [`run`], with `full` giving the whole command tree: the binary adds the commands it
/// dispatches itself (`daemon`, `registry`), so that help, completions and man pages show them.
pub fn run_with(args: Vec<OsString>, full: fn() -> clap::Command) -> i32 {
    if args.get(1).is_some_and(|a| a == "man") {
        return match cli::ManArgs::try_parse_from(args.iter().skip(1)) {
            Ok(a) => generate::man(&a, full()),
            Err(e) => {
                let _ = e.print();
                if e.use_stderr() {
                    125
                } else {
                    0
                }
            }
        };
    }
    let cli = match full()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        println!("{}", version_line());
        return 0;
    }
    let tls = tls_options(&cli, &|k| std::env::var_os(k));
    let Some(cmd) = cli.cmd else {
        // docker with no command prints its usage.
        let _ = full().print_help();
        return 0;
    };
    match &cmd {
        Cmd::Completion(a) => return generate::completion(a, full()),
        Cmd::Run(a) | Cmd::Container(cli::ContainerCmd::Run(a)) => {
            slip::warn_misplaced("run", &a.args)
        }
        Cmd::Create(a) | Cmd::Container(cli::ContainerCmd::Create(a)) => {
            slip::warn_misplaced("create", &a.args)
        }
        _ => {}
    }
    let host = cli
        .host
        .clone()
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start runtime: {e}");
            return 1;
        }
    };
    let (name, usage_exit) = cmd.name_and_exit();
    let code = rt.block_on(async move {
        let client = match Client::new_with_tls(&host, tls.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let client = match std::env::var("BERTH_API_VERSION")
            .or_else(|_| std::env::var("DOCKER_API_VERSION"))
        {
            Ok(v) if !v.is_empty() => client.with_version(&v),
            _ => client,
        };
        let client = Arc::new(client);
        match dispatch(client, cmd).await {
            Ok(code) => code,
            Err(e) => report(&name, usage_exit, e),
        }
    });
    // A blocking stdin read may still be pending; do not wait for it.
    rt.shutdown_background();
    code
}

/// The docker CLI's TLS rules: `--tlsverify` (default: `DOCKER_TLS_VERIFY` is set) verifies
/// the daemon and implies `--tls` (default: `DOCKER_TLS` is set), even as `--tlsverify=false`.
/// Files come from `$DOCKER_CERT_PATH` (else the config dir, `~/.docker`) unless given; a
/// default client certificate or key that does not exist is simply not sent.
fn tls_options(
    cli: &cli::Cli,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<berth_api::tls::TlsOptions> {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    let verify = cli.tlsverify.unwrap_or_else(|| set("DOCKER_TLS_VERIFY"));
    let tls = cli.tlsverify.is_some() || verify || cli.tls.unwrap_or_else(|| set("DOCKER_TLS"));
    if !tls {
        return None;
    }
    let dir = env("DOCKER_CERT_PATH")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            env("DOCKER_CONFIG")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        })
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".docker"))
        })
        .unwrap_or_default();
    let default_if_present = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
    Some(berth_api::tls::TlsOptions {
        verify,
        ca: Some(cli.tlscacert.clone().unwrap_or_else(|| dir.join("ca.pem"))),
        cert: cli
            .tlscert
            .clone()
            .or_else(|| default_if_present("cert.pem")),
        key: cli.tlskey.clone().or_else(|| default_if_present("key.pem")),
    })
}

/// Print an error the way docker does and pick the exit code.
fn report(cmd: &str, run_like: bool, e: CliError) -> i32 {
    match e {
        CliError::Exit(code) => code,
        CliError::Usage(m) => {
            eprintln!("berth: {m}\nSee 'berth {cmd} --help'.");
            125
        }
        other if run_like => {
            eprintln!("berth: {other}\n\nRun 'berth {cmd} --help' for more information");
            125
        }
        other => {
            eprintln!("{other}");
            1
        }
    }
}

async fn dispatch(c: Arc<Client>, cmd: Cmd) -> Result<i32, CliError> {
    use crate::cli::{ContainerCmd as C, ImageCmd as I, SystemCmd as S};
    match cmd {
        Cmd::Version(a) | Cmd::System(S::Version(a)) => cmd_system::version(&c, a).await,
        Cmd::Info(a) | Cmd::System(S::Info(a)) => cmd_system::info(&c, a).await,
        Cmd::Images(a) | Cmd::Image(I::Ls(a)) => cmd_image::images(&c, a).await,
        Cmd::Image(I::Inspect(a)) => cmd_container::inspect(&c, a.into_generic("image")).await,
        Cmd::History(a) | Cmd::Image(I::History(a)) => cmd_image::history(&c, a).await,
        Cmd::Tag(a) | Cmd::Image(I::Tag(a)) => cmd_image::tag(&c, a).await,
        Cmd::Rmi(a) | Cmd::Image(I::Rm(a)) => cmd_image::rmi(&c, a).await,
        Cmd::Build(a) | Cmd::Image(I::Build(a)) => cmd_build::build(&c, a).await,
        Cmd::Load(a) | Cmd::Image(I::Load(a)) => cmd_image::load(&c, a).await,
        Cmd::Save(a) | Cmd::Image(I::Save(a)) => cmd_image::save(&c, a).await,
        Cmd::Import(a) | Cmd::Image(I::Import(a)) => cmd_image::import(&c, a).await,
        Cmd::Pull(a) | Cmd::Image(I::Pull(a)) => cmd_image::pull(&c, a).await,
        Cmd::Search(a) => cmd_image::search(&c, a).await,
        Cmd::Push(a) | Cmd::Image(I::Push(a)) => cmd_image::push(&c, a).await,
        Cmd::Login(a) => auth::login(&c, a).await,
        Cmd::Logout(a) => auth::logout(a).await,
        Cmd::Create(a) | Cmd::Container(C::Create(a)) => cmd_run::create(c, a).await,
        Cmd::Run(a) | Cmd::Container(C::Run(a)) => cmd_run::run(c, a).await,
        Cmd::Start(a) | Cmd::Container(C::Start(a)) => cmd_run::start(c, a).await,
        Cmd::Attach(a) | Cmd::Container(C::Attach(a)) => cmd_run::attach(c, a).await,
        Cmd::Exec(a) | Cmd::Container(C::Exec(a)) => cmd_run::exec(c, a).await,
        Cmd::Cp(a) | Cmd::Container(C::Cp(a)) => cmd_cp::cp(c, a).await,
        Cmd::Events(a) | Cmd::System(S::Events(a)) => cmd_events::events(c, a).await,
        Cmd::System(S::Df(a)) => cmd_prune::df(c, a).await,
        Cmd::System(S::Prune(a)) => cmd_prune::system_prune(c, a).await,
        Cmd::Container(C::Prune(a)) => cmd_prune::container_prune(c, a).await,
        Cmd::Image(I::Prune(a)) => cmd_prune::image_prune(c, a).await,
        Cmd::Pause(x) | Cmd::Container(C::Pause(x)) => cmd_ops::pause(c, x).await,
        Cmd::Unpause(x) | Cmd::Container(C::Unpause(x)) => cmd_ops::unpause(c, x).await,
        Cmd::Top(x) | Cmd::Container(C::Top(x)) => cmd_ops::top(c, x).await,
        Cmd::Diff(x) | Cmd::Container(C::Diff(x)) => cmd_ops::diff(c, x).await,
        Cmd::Commit(x) | Cmd::Container(C::Commit(x)) => cmd_ops::commit(c, x).await,
        Cmd::Export(x) | Cmd::Container(C::Export(x)) => cmd_ops::export(c, x).await,
        Cmd::Update(x) | Cmd::Container(C::Update(x)) => cmd_ops::update(c, x).await,
        Cmd::Stats(x) | Cmd::Container(C::Stats(x)) => cmd_ops::stats(c, x).await,
        Cmd::Stop(a) | Cmd::Container(C::Stop(a)) => cmd_container::stop(&c, a).await,
        Cmd::Kill(a) | Cmd::Container(C::Kill(a)) => cmd_container::kill(&c, a).await,
        Cmd::Restart(a) | Cmd::Container(C::Restart(a)) => cmd_container::restart(&c, a).await,
        Cmd::Rm(a) | Cmd::Container(C::Rm(a)) => cmd_container::rm(&c, a).await,
        Cmd::Ps(a) | Cmd::Container(C::Ls(a)) => cmd_container::ps(&c, a).await,
        Cmd::Inspect(a) => cmd_container::inspect(&c, a).await,
        Cmd::Container(C::Inspect(a)) => {
            cmd_container::inspect(&c, a.into_generic("container")).await
        }
        Cmd::Logs(a) | Cmd::Container(C::Logs(a)) => cmd_run::logs(&c, a).await,
        Cmd::Wait(a) | Cmd::Container(C::Wait(a)) => cmd_container::wait(&c, a).await,
        Cmd::Rename(a) | Cmd::Container(C::Rename(a)) => cmd_container::rename(&c, a).await,
        Cmd::Port(a) | Cmd::Container(C::Port(a)) => cmd_container::port(&c, a).await,
        Cmd::Volume(v) => cmd_volume::run(&c, v).await,
        Cmd::Network(n) => cmd_network::run(&c, n).await,
        // Handled before a client exists.
        Cmd::Completion(_) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str], env: &[(&str, &str)]) -> Option<berth_api::tls::TlsOptions> {
        let mut a = vec!["berth"];
        a.extend_from_slice(args);
        a.push("ps");
        let cli = Cli::try_parse_from(a).expect("parse");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tls_options(&cli, &|k| {
            env.iter()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn tls_flags_and_environment_as_the_docker_cli() {
        assert_eq!(opts(&[], &[]), None);
        assert_eq!(opts(&[], &[("DOCKER_CERT_PATH", "/c")]), None);
        let o = opts(
            &[],
            &[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")],
        )
        .expect("tls");
        assert!(o.verify);
        assert_eq!(o.ca, Some("/c/ca.pem".into()));
        // Default client files that do not exist are not sent.
        assert_eq!((o.cert, o.key), (None, None));
        // --tlsverify=false still means TLS (the docker CLI's rule), without verification.
        let o = opts(&["--tlsverify=false"], &[("DOCKER_TLS_VERIFY", "1")]).expect("tls");
        assert!(!o.verify);
        let o = opts(&["--tls"], &[("HOME", "/h")]).expect("tls");
        assert!(!o.verify);
        assert_eq!(o.ca, Some("/h/.docker/ca.pem".into()));
        let o = opts(&[], &[("DOCKER_TLS", "1")]).expect("tls");
        assert!(!o.verify);
        let o = opts(
            &[
                "--tlsverify",
                "--tlscacert",
                "/x/ca",
                "--tlscert",
                "/x/c",
                "--tlskey",
                "/x/k",
            ],
            &[],
        )
        .expect("tls");
        assert!(o.verify);
        assert_eq!(o.ca, Some("/x/ca".into()));
        assert_eq!(o.cert, Some("/x/c".into()));
        assert_eq!(o.key, Some("/x/k".into()));
        assert_eq!(opts(&["--tls=false"], &[("DOCKER_TLS", "1")]), None);
    }
}
