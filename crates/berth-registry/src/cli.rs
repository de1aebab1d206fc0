//! `berth registry serve|garbage-collect` command lines.

use crate::server::{self, ServerConfig};
use crate::storage::Storage;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "berth registry", about = "Run an OCI distribution registry")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the OCI distribution API
    Serve(ServeArgs),
    /// Remove blobs no manifest references
    GarbageCollect(GcArgs),
}

#[derive(Parser, Debug)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: String,
    /// Storage directory
    #[arg(long, default_value = "/var/lib/berth-registry")]
    storage: PathBuf,
    /// TLS certificate chain (PEM)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// htpasswd file (bcrypt entries) enabling basic authentication
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// With --htpasswd: allow pulls without credentials
    #[arg(long)]
    anonymous_read: bool,
}

#[derive(Parser, Debug)]
struct GcArgs {
    /// Storage directory
    #[arg(long)]
    storage: PathBuf,
    /// Only print what would be removed
    #[arg(long)]
    dry_run: bool,
}

/// The `berth registry` grammar, for the binary's help, completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Entry point for `berth registry ...`; `args` are the arguments after "registry".
pub fn main(args: Vec<String>) -> i32 {
    let argv = std::iter::once("berth registry".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.cmd {
        Cmd::Serve(a) => run_serve(a),
        Cmd::GarbageCollect(a) => run_gc(a),
    }
}

/// Entry point for `berth registry serve ...`; `args` are the arguments after "serve".
pub fn serve_main(args: Vec<String>) -> i32 {
    let argv = std::iter::once("serve".to_string()).chain(args);
    match ServeArgs::try_parse_from(argv) {
        Ok(a) => run_serve(a),
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            code
        }
    }
}

fn run_gc(a: GcArgs) -> i32 {
    let res = Storage::open(&a.storage).and_then(|s| s.garbage_collect(a.dry_run));
    match res {
        Ok(removed) => {
            for d in &removed {
                if a.dry_run {
                    println!("would delete blob {d}");
                } else {
                    println!("deleted blob {d}");
                }
            }
            println!("{} blobs eligible for deletion", removed.len());
            0
        }
        Err(e) => {
            eprintln!("garbage-collect: {e}");
            1
        }
    }
}

fn run_serve(a: ServeArgs) -> i32 {
    let cfg = ServerConfig {
        storage: a.storage,
        htpasswd: a.htpasswd,
        anonymous_read: a.anonymous_read,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => match server::tls_config(c, k) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("registry: {e}");
                return 1;
            }
        },
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("registry: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let reg = match server::spawn(&cfg, &a.addr, tls.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("registry: {e}");
                return 1;
            }
        };
        eprintln!(
            "listening on {} ({})",
            reg.addr,
            if tls.is_some() { "https" } else { "http" }
        );
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("registry: {e}");
                    return 1;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        reg.shutdown().await;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let c = Cli::try_parse_from([
            "berth registry",
            "serve",
            "--storage",
            "/s",
            "--htpasswd",
            "/h",
            "--anonymous-read",
        ])
        .map_err(|e| e.to_string());
        match c {
            Ok(Cli { cmd: Cmd::Serve(a) }) => {
                assert_eq!(a.addr, "127.0.0.1:5000");
                assert!(a.anonymous_read);
                assert_eq!(a.htpasswd, Some(PathBuf::from("/h")));
            }
            other => panic!("{other:?}"),
        }
        // --tls-cert needs --tls-key.
        assert!(Cli::try_parse_from(["berth registry", "serve", "--tls-cert", "/c"]).is_err());
        assert!(Cli::try_parse_from(["berth registry", "garbage-collect"]).is_err());
        assert_eq!(main(vec!["bogus".into()]), 125);
    }
}
