//! Detach key sequences (`ctrl-p,ctrl-q` by default) recognised in a stdin stream. The daemon
//! scans attach and exec stdin for them (the `detachKeys` parameter), as Docker does; the CLI
//! also uses them on its side. Matched keys are held back and never reach the container.

/// docker's default detach sequence.
pub const DEFAULT_KEYS: &str = "ctrl-p,ctrl-q";

/// Parse `ctrl-p,ctrl-q` / `a,ctrl-@` into bytes.
pub fn parse_keys(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_alphabetic() => b.to_ascii_lowercase() - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("Unknown character: '{c}'")),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!("Unknown character: '{k}'"));
        }
    }
    Ok(out)
}

/// Incremental matcher over the stdin stream.
#[derive(Debug)]
pub struct EscapeMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeMatcher {
    pub fn new(keys: Vec<u8>) -> Self {
        EscapeMatcher { keys, matched: 0 }
    }

    /// Filter `input`: returns the bytes to forward and whether the sequence completed (bytes
    /// after it are dropped, as the session ends).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // A partial match that failed: release the held-back keys.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_key_specs() {
        assert_eq!(parse_keys(DEFAULT_KEYS), Ok(vec![16, 17]));
        assert_eq!(parse_keys("a,ctrl-@,ctrl-["), Ok(vec![b'a', 0, 27]));
        assert!(parse_keys("ctrl-ab").is_err());
    }

    #[test]
    fn matches_across_reads_and_releases_false_starts() {
        let mut m = EscapeMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(m.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11rest"), (Vec::new(), true));
    }
}
