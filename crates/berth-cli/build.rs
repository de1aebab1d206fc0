//! Records the git commit Berth is built from (for `berth --version`, and as the daemon's build
//! script too, for `/version`'s GitCommit) when it is cheap to know:
//! `BERTH_GIT_COMMIT` from the environment (packagers), else `git rev-parse` in a checkout.
//! Outside a git checkout, or without git, the version line simply has no build field.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_GIT_COMMIT");
    if let Some(c) = std::env::var("BERTH_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        println!("cargo:rustc-env=BERTH_GIT_COMMIT={c}");
        return;
    }
    let Some(commit) = git(&["rev-parse", "--short=7", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
    // Build again when HEAD moves: HEAD itself, the branch it names, and packed refs.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &w]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
}
