//! Image commands: images, history, tag, rmi, load, save, import, pull.

use std::io::{IsTerminal, Write};

use berth_api::client::Response;
use berth_api::Client;
use tokio::io::AsyncRead;

use crate::cli::{
    HistoryArgs, ImagesArgs, ImportArgs, LoadArgs, PullArgs, RmiArgs, SaveArgs, SearchArgs, TagArgs,
};
use crate::error::CliError;
use crate::format::{self, now_unix, render_rows, split_repo_tag};

/// Print a JSON-lines progress stream as docker does: bars updated in place on a terminal, the
/// status lines alone to a pipe; an `error` ends it.
pub async fn display_json_messages(resp: Response, quiet: bool) -> Result<(), CliError> {
    display_json_messages_to(resp, quiet, false).await
}

/// As [`display_json_messages`], to stderr when `to_stderr` (`run`'s implicit pull).
pub async fn display_json_messages_to(
    resp: Response,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), CliError> {
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let width = crate::term::size().map(|(_, c)| c).unwrap_or(80);
    let mut renderer = crate::progress::Renderer::new(terminal, width);
    let mut lines = resp.json_lines();
    while let Some(m) = lines.next().await? {
        if let Some(e) = m
            .error
            .clone()
            .or(m.error_detail.clone().map(|d| d.message))
        {
            return Err(CliError::msg(e));
        }
        if quiet {
            continue;
        }
        let text = renderer.render(&m);
        if text.is_empty() {
            continue;
        }
        let mut out: Box<dyn Write> = if to_stderr {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    Ok(())
}

pub async fn images(c: &Client, a: ImagesArgs) -> Result<i32, CliError> {
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| CliError::msg("bad format of filter (expected name=value)"))?;
        filters.push((k.trim().to_lowercase(), v.to_string()));
    }
    if let Some(r) = &a.reference {
        filters.push(("reference".into(), r.clone()));
    }
    let list = c.images_list(a.all, a.digests, &filters).await?;
    let now = now_unix();
    let trunc = !a.no_trunc;
    let rows: Vec<_> = list
        .iter()
        .flat_map(|i| format::image_rows(i, trunc, a.digests, now))
        .filter(|r| a.reference.as_deref().is_none_or(|p| row_matches(r, p)))
        .collect();
    let fmt = format::listing_format(
        a.quiet.then_some("{{.ID}}"),
        a.format.as_deref(),
        if a.digests {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        } else {
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        },
    );
    print!("{}", render_rows(&fmt, format::IMAGE_HEADERS, &rows)?);
    Ok(0)
}

/// Whether an `images` row is selected by a REPOSITORY[:TAG] argument (with `*`/`?` globs): an
/// image with several tags is listed only under the matching ones.
fn row_matches(row: &crate::value::Value, pattern: &str) -> bool {
    let get = |k: &str| match row.get(k) {
        Some(crate::value::Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let repo = get("Repository");
    let tag = get("Tag");
    let pattern = format::familiar(pattern);
    let (prepo, ptag) = split_repo_tag(&pattern);
    if !glob(&prepo, &repo) {
        return false;
    }
    ptag.is_empty() || glob(&ptag, &tag)
}

/// Shell-style match with `*` (not crossing `/`) and `?`.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && s[0] != '/' && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    go(&p, &t)
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<i32, CliError> {
    let items = c.image_history(&a.image).await?;
    let now = now_unix();
    let rows: Vec<_> = items
        .iter()
        .map(|h| format::history_row(h, !a.no_trunc, a.human, now))
        .collect();
    let fmt = format::listing_format(
        a.quiet.then_some("{{.ID}}"),
        a.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    );
    print!("{}", render_rows(&fmt, format::HISTORY_HEADERS, &rows)?);
    Ok(0)
}

pub async fn search(c: &Client, a: SearchArgs) -> Result<i32, CliError> {
    let mut q: Vec<(&str, String)> = vec![("term", a.term.clone())];
    if let Some(l) = a.limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(f) = crate::opts::filters_json(&a.filter, &[])? {
        q.push(("filters", f));
    }
    let found: Vec<serde_json::Value> = c.get_json("/images/search", &q).await?;
    let rows: Vec<_> = found
        .iter()
        .map(|r| format::search_row(r, !a.no_trunc))
        .collect();
    let fmt = format::listing_format(
        None,
        a.format.as_deref(),
        "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}",
    );
    print!("{}", render_rows(&fmt, format::SEARCH_HEADERS, &rows)?);
    Ok(0)
}

pub async fn tag(c: &Client, a: TagArgs) -> Result<i32, CliError> {
    if a.target.contains('@') {
        return Err(CliError::msg(
            "refusing to create a tag with a digest reference",
        ));
    }
    let (repo, tag) = split_repo_tag(&a.target);
    let tag = if tag.is_empty() {
        "latest".to_string()
    } else {
        tag
    };
    c.image_tag(&a.source, &repo, Some(&tag)).await?;
    Ok(0)
}

pub async fn rmi(c: &Client, a: RmiArgs) -> Result<i32, CliError> {
    let mut failed = false;
    for name in &a.images {
        match c.image_remove(name, a.force, a.no_prune).await {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<i32, CliError> {
    let reader: Box<dyn AsyncRead + Send + Unpin> = match &a.input {
        Some(p) => Box::new(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| CliError::msg(format!("open {p}: {e}")))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::msg(
                    "requested load from stdin, but stdin is empty",
                ));
            }
            Box::new(tokio::io::stdin())
        }
    };
    let resp = c.image_load(reader, a.quiet).await?;
    let is_json = resp
        .header("content-type")
        .is_some_and(|t| t.contains("json"));
    if is_json {
        display_json_messages(resp, false).await?;
    } else {
        let b = resp.bytes().await?;
        std::io::stdout().write_all(&b)?;
    }
    Ok(0)
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<i32, CliError> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::msg(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let mut resp = c.image_save(&a.images).await?;
    match &a.output {
        Some(path) => {
            // Write next to the target and rename, so a failed save leaves no partial file.
            let tmp = format!("{path}.berth-tmp");
            let mut f = std::fs::File::create(&tmp)
                .map_err(|e| CliError::msg(format!("failed to save image: {e}")))?;
            let r: Result<(), CliError> = async {
                while let Some(chunk) = resp.chunk().await? {
                    f.write_all(&chunk)?;
                }
                f.sync_all()?;
                Ok(())
            }
            .await;
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, path)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            while let Some(chunk) = resp.chunk().await? {
                out.write_all(&chunk)?;
            }
            out.flush()?;
        }
    }
    Ok(0)
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<i32, CliError> {
    let reader: Box<dyn AsyncRead + Send + Unpin> = if a.source == "-" {
        Box::new(tokio::io::stdin())
    } else if a.source.starts_with("http://") || a.source.starts_with("https://") {
        return Err(CliError::msg("importing from a URL is not supported"));
    } else {
        Box::new(
            tokio::fs::File::open(&a.source)
                .await
                .map_err(|e| CliError::msg(format!("open {}: {e}", a.source)))?,
        )
    };
    let (repo, tag) = match &a.reference {
        Some(r) => {
            let (repo, tag) = split_repo_tag(r);
            (Some(repo), (!tag.is_empty()).then_some(tag))
        }
        None => (None, None),
    };
    let resp = c
        .image_import(
            reader,
            repo.as_deref(),
            tag.as_deref(),
            a.message.as_deref(),
            &a.change,
            a.platform.as_deref(),
        )
        .await?;
    display_json_messages(resp, false).await?;
    Ok(0)
}

/// `fromImage`/`tag` for a reference: a digest stays in the name, a missing tag is `latest`.
pub fn pull_params(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_string(), None);
    }
    let (repo, tag) = split_repo_tag(image);
    (
        repo,
        Some(if tag.is_empty() { "latest".into() } else { tag }),
    )
}

pub async fn pull_image(
    c: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), CliError> {
    let (repo, tag) = pull_params(image);
    let resp = c
        .image_pull(
            &repo,
            tag.as_deref(),
            platform,
            crate::auth::registry_auth_for(&repo).as_deref(),
        )
        .await?;
    display_json_messages_to(resp, quiet, to_stderr).await
}

/// `push NAME[:TAG]`: the daemon uploads; we show its progress as docker does.
pub async fn push(c: &Client, a: crate::cli::PushArgs) -> Result<i32, CliError> {
    if a.all_tags {
        return Err(CliError::msg("--all-tags is not supported"));
    }
    let (repo, tag) = pull_params(&a.image);
    if !a.quiet && tag.is_none() && !a.image.contains('@') {
        println!("Using default tag: latest");
    }
    let resp = c
        .image_push(
            &repo,
            tag.as_deref(),
            crate::auth::registry_auth_for(&repo).as_deref(),
        )
        .await?;
    display_json_messages_to(resp, a.quiet, false).await?;
    if a.quiet {
        println!("{}", a.image);
    }
    Ok(0)
}

pub async fn pull(c: &Client, a: PullArgs) -> Result<i32, CliError> {
    if a.all_tags {
        return Err(CliError::msg("--all-tags is not supported"));
    }
    let (repo, tag) = pull_params(&a.image);
    if !a.quiet && tag.is_none() && !a.image.contains('@') {
        println!("Using default tag: latest");
    }
    pull_image(c, &a.image, a.platform.as_deref(), a.quiet, false).await?;
    if a.quiet {
        let full = match tag {
            Some(t) => format!("{repo}:{t}"),
            None => repo,
        };
        println!("{}", qualified(&full));
    }
    Ok(0)
}

/// `busybox:latest` -> `docker.io/library/busybox:latest`, as `pull -q` prints.
fn qualified(r: &str) -> String {
    let first = r.split('/').next().unwrap_or("");
    let has_domain =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r.to_string()
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_argument_selects_rows() {
        use crate::value::Value;
        let row = |r: &str, t: &str| {
            Value::Object(vec![
                ("Repository".into(), Value::str(r)),
                ("Tag".into(), Value::str(t)),
            ])
        };
        assert!(row_matches(&row("busybox", "latest"), "busybox"));
        assert!(row_matches(&row("busybox", "latest"), "busybox:latest"));
        assert!(!row_matches(&row("myrepo/bb", "v1"), "busybox"));
        assert!(row_matches(&row("myrepo/bb", "v1"), "myrepo/*"));
        assert!(!row_matches(&row("busybox", "1.36"), "busybox:latest"));
        assert!(row_matches(
            &row("busybox", "1.36"),
            "docker.io/library/busybox"
        ));
    }

    #[test]
    fn pull_references() {
        assert_eq!(
            pull_params("busybox"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            pull_params("localhost:5000/a/b:1"),
            ("localhost:5000/a/b".into(), Some("1".into()))
        );
        assert_eq!(pull_params("x@sha256:ab"), ("x@sha256:ab".into(), None));
        assert_eq!(
            qualified("busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(qualified("localhost:5000/x:1"), "localhost:5000/x:1");
    }
}
