//! `berth build`: packs the context (honouring `.dockerignore`) into a tar, sends it to
//! `POST /build` and prints the legacy builder's stream.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_api::Client;
use berth_build::dockerignore::Ignore;
use clap::Args;

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"); "-" reads it from STDIN
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long)]
    pub force_rm: bool,
    /// Squash newly built layers into a single new layer (daemon in experimental mode)
    #[arg(long)]
    pub squash: bool,
    /// Build context: a directory, a tar archive, or "-" (a Dockerfile or tar on STDIN)
    pub context: String,
}

fn add_file(tb: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    tb.append_data(&mut h, name, data)
}

/// The context directory as a tar, `.dockerignore` applied (the Dockerfile and
/// `.dockerignore` are always sent).
fn pack_dir(dir: &Path, keep: &[String]) -> Result<Vec<u8>, CliError> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => Ignore::parse(&t),
        Err(_) => Ignore::default(),
    };
    let mut tb = tar::Builder::new(Vec::new());
    tb.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    let io = |e: std::io::Error| CliError::msg(format!("error creating build context: {e}"));
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&full)
            .map_err(|e| CliError::msg(format!("error checking context: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names.into_iter().rev() {
            let r = rel.join(&n);
            let rs = r.to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(dir.join(&r)).map_err(io)?;
            let excluded = !keep.contains(&rs) && ignore.excluded(&rs);
            if m.is_dir() {
                if !excluded {
                    tb.append_path_with_name(dir.join(&r), &r).map_err(io)?;
                }
                if !excluded || ignore.has_exceptions() {
                    stack.push(r);
                }
                continue;
            }
            if excluded {
                continue;
            }
            tb.append_path_with_name(dir.join(&r), &r).map_err(io)?;
        }
    }
    tb.into_inner().map_err(io)
}

fn is_archive(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b]) || (b.len() > 262 && &b[257..262] == b"ustar")
}

pub async fn build(c: &Client, a: BuildArgs) -> Result<i32, CliError> {
    let mut dockerfile_name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
    let context: Vec<u8> = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            return Err(CliError::msg(
                "invalid argument: can't use stdin for both build context and dockerfile",
            ));
        }
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        if is_archive(&b) {
            b
        } else {
            dockerfile_name = "Dockerfile".into();
            let mut tb = tar::Builder::new(Vec::new());
            add_file(&mut tb, "Dockerfile", &b)?;
            tb.into_inner()?
        }
    } else if Path::new(&a.context).is_file() {
        std::fs::read(&a.context)
            .map_err(|e| CliError::msg(format!("unable to prepare context: {e}")))?
    } else {
        let dir = Path::new(&a.context);
        if !dir.is_dir() {
            return Err(CliError::msg(format!(
                "unable to prepare context: path \"{}\" not found",
                a.context
            )));
        }
        // A Dockerfile from stdin or outside the context travels in the tar under a
        // generated name.
        let mut extra: Option<(String, Vec<u8>)> = None;
        let mut keep = vec![".dockerignore".to_string()];
        match a.file.as_deref() {
            Some("-") => {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b)?;
                extra = Some((format!(".dockerfile.{}", std::process::id()), b));
            }
            Some(f) => {
                let fp = Path::new(f);
                let abs_ctx = std::fs::canonicalize(dir)?;
                let abs_f = std::fs::canonicalize(fp).map_err(|e| {
                    CliError::msg(format!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: {e}"))
                })?;
                match abs_f.strip_prefix(&abs_ctx) {
                    Ok(rel) => {
                        dockerfile_name = rel.to_string_lossy().into_owned();
                        keep.push(dockerfile_name.clone());
                    }
                    Err(_) => {
                        let b = std::fs::read(&abs_f)?;
                        extra = Some((format!(".dockerfile.{}", std::process::id()), b));
                    }
                }
            }
            None => keep.push("Dockerfile".into()),
        }
        let tar = pack_dir(dir, &keep)?;
        match extra {
            None => tar,
            Some((name, data)) => {
                // Append to the archive: drop its two zero end blocks, add, close again.
                let mut tb = tar::Builder::new(Vec::new());
                let mut ar = tar::Archive::new(&tar[..]);
                for e in ar.entries()? {
                    let mut e = e?;
                    let mut h = e.header().clone();
                    let p = e.path()?.into_owned();
                    if let Some(l) = e.link_name()?.map(|l| l.into_owned()) {
                        tb.append_link(&mut h, &p, l)?;
                    } else {
                        tb.append_data(&mut h, &p, &mut e)?;
                    }
                }
                add_file(&mut tb, &name, &data)?;
                dockerfile_name = name;
                tb.into_inner()?
            }
        }
    };

    let mut build_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), Some(v.to_string())),
            None => build_args.insert(kv.clone(), std::env::var(kv).ok()),
        };
    }
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for kv in &a.labels {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let mut q: Vec<(&str, String)> = Vec::new();
    for t in &a.tags {
        q.push(("t", t.clone()));
    }
    q.push(("dockerfile", dockerfile_name));
    if !build_args.is_empty() {
        q.push(("buildargs", serde_json::to_string(&build_args)?));
    }
    if !labels.is_empty() {
        q.push(("labels", serde_json::to_string(&labels)?));
    }
    if let Some(t) = &a.target {
        q.push(("target", t.clone()));
    }
    if a.no_cache {
        q.push(("nocache", "1".into()));
    }
    if !a.cache_from.is_empty() {
        q.push(("cachefrom", serde_json::to_string(&a.cache_from)?));
    }
    for h in &a.add_hosts {
        q.push(("extrahosts", h.clone()));
    }
    if a.pull {
        q.push(("pull", "1".into()));
    }
    if a.quiet {
        q.push(("q", "1".into()));
    }
    q.push(("rm", if a.rm { "1" } else { "0" }.into()));
    if a.force_rm {
        q.push(("forcerm", "1".into()));
    }
    q.push(("networkmode", a.network.clone()));
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    if a.squash {
        q.push(("squash", "1".into()));
    }
    let resp = c
        .request(
            berth_api::client::Method::POST,
            "/build",
            &q,
            berth_api::client::Body::tar(std::io::Cursor::new(context)),
        )
        .await?;
    let mut lines = resp.json_lines();
    let mut id: Option<String> = None;
    let mut out = std::io::stdout().lock();
    while let Some(m) = lines.next().await? {
        if let Some(e) = m
            .error_detail
            .as_ref()
            .map(|d| d.message.clone())
            .or(m.error.clone())
        {
            let _ = out.flush();
            eprintln!("{e}");
            return Ok(1);
        }
        if let Some(s) = &m.stream {
            if !a.quiet {
                out.write_all(s.as_bytes())?;
                out.flush()?;
            }
        }
        if let Some(s) = &m.status {
            if !a.quiet {
                match &m.id {
                    Some(i) => writeln!(out, "{i}: {s}")?,
                    None => writeln!(out, "{s}")?,
                }
            }
        }
        if let Some(aux) = &m.aux {
            if let Some(i) = aux.get("ID").and_then(|v| v.as_str()) {
                id = Some(i.to_string());
            }
        }
    }
    let Some(id) = id else {
        return Err(CliError::msg("the build did not report an image ID"));
    };
    if a.quiet {
        writeln!(out, "{id}")?;
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).map_err(|e| CliError::msg(format!("writing image ID file: {e}")))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn parse(args: &[&str]) -> super::BuildArgs {
        let mut v = vec!["berth", "build"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map(|c| c.cmd) {
            Ok(Some(Cmd::Build(a))) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_build_grammar() {
        let a = parse(&[
            "-t",
            "a",
            "--tag",
            "b:1",
            "--build-arg",
            "X=1",
            "--rm",
            "-q",
            ".",
        ]);
        assert_eq!(a.tags, vec!["a", "b:1"]);
        assert!(a.rm && a.quiet);
        assert_eq!(a.context, ".");
        assert!(!parse(&["--rm=false", "-"]).rm);
        assert_eq!(parse(&["-f", "-", "dir"]).file.as_deref(), Some("-"));
    }
}
