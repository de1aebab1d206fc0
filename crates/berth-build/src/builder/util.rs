//! Small helpers shared by the builder's modules.

use super::BuildError;
use crate::shell::Lexer;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub(super) fn failed(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Failed(format!("{what}: {e}"))
}

/// The short (12 hex) form of an image or container id.
pub(super) fn short(id: &str) -> String {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    h[..h.len().min(12)].to_string()
}

pub(super) fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Variable substitution in one word, as the Dockerfile's instructions do it.
pub(super) fn expand(lx: &Lexer, s: &str, env: &[String]) -> Result<String, BuildError> {
    lx.process_word(s, &env.to_vec())
        .map_err(|e| BuildError::BadRequest(e.to_string()))
}

/// Whether a RUN's only argument is a heredoc marker (`<<EOF`, `<<-EOF`, `3<<EOF`).
pub(super) fn is_only_heredoc(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 1
        && w[0]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with("<<")
}

pub(super) fn with_shell(shell: &[String], args: &[String]) -> Vec<String> {
    let mut v = shell.to_vec();
    v.push(args.join(" "));
    v
}

pub(super) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Quotes a value so the shell lexer gives it back unchanged.
pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

pub(super) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A name unique to this process and moment, for temp files and snapshots.
pub(super) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp directory removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
