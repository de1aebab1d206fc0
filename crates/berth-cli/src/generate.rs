//! `berth completion SHELL` and the hidden `berth man --dir DIR`: both are generated from the
//! clap definition of the whole command tree, so they cannot fall behind the grammar.

use std::io::Write;

use crate::cli::{CompletionArgs, ManArgs};

/// Writes the completion script for `a.shell` to stdout.
pub fn completion(a: &CompletionArgs, mut cmd: clap::Command) -> i32 {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "berth", &mut out);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|_| stdout.flush()) {
        Ok(()) => 0,
        // `berth completion bash | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("berth completion: {e}");
            1
        }
    }
}

/// Writes `berth.1` and one page per visible subcommand (`berth-run.1`, `berth-network-create.1`,
/// ...) into `a.dir`, and prints the paths written.
pub fn man(a: &ManArgs, cmd: clap::Command) -> i32 {
    match write_man_pages(cmd, &a.dir) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            0
        }
        Err(e) => {
            eprintln!("berth man: {}: {e}", a.dir.display());
            1
        }
    }
}

/// The man pages of `cmd` and its visible subcommands, written into `dir`.
pub fn write_man_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cmd.build();
    let mut paths = Vec::new();
    fn walk(
        cmd: &clap::Command,
        dir: &std::path::Path,
        paths: &mut Vec<std::path::PathBuf>,
    ) -> std::io::Result<()> {
        let page = clap_mangen::Man::new(cmd.clone())
            .source(concat!("Berth ", env!("CARGO_PKG_VERSION")))
            .manual("Berth Manual");
        paths.push(page.generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, dir, paths)?;
        }
        Ok(())
    }
    walk(&cmd, dir, &mut paths)?;
    Ok(paths)
}
