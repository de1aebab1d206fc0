//! `.dockerignore`: Docker's pattern rules. Patterns are cleaned paths relative to the context
//! root (a leading `/` is dropped); `*`, `?`, `[...]` match within one path element, `**`
//! matches any number of elements; a pattern also excludes everything under a directory it
//! matches; `!pattern` re-includes; the last matching pattern decides.

#[derive(Clone, Debug)]
struct Pattern {
    parts: Vec<String>,
    exclusion: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut l = line.trim();
            if l.is_empty() {
                continue;
            }
            let exclusion = l.starts_with('!');
            if exclusion {
                l = l[1..].trim();
            }
            let c = clean(l);
            if c.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                parts: c.split('/').map(String::from).collect(),
                exclusion,
            });
        }
        Ignore { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some `!` pattern exists (then excluded directories must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            // The pattern matches the path or one of its parent directories.
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }
}

fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| match_parts(&pat[1..], &path[i..])),
        Some(p) => !path.is_empty() && glob(p, path[0]) && match_parts(&pat[1..], &path[1..]),
    }
}

/// One path element against a glob (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes).
pub fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_at(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(c) = t.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^' | '!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != ']' || first) {
                first = false;
                let mut lo = p[i];
                if lo == '\\' && i + 1 < p.len() {
                    i += 1;
                    lo = p[i];
                }
                let mut hi = lo;
                if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                    hi = p[i + 2];
                    i += 2;
                }
                if lo <= *c && *c <= hi {
                    matched = true;
                }
                i += 1;
            }
            if i >= p.len() {
                return false; // malformed class
            }
            matched != negate && glob_at(&p[i + 1..], &t[1..])
        }
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob_at(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob_at(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let i = Ignore::parse("# comment\n*.md\n!README.md\nbuild/\n**/*.tmp\n/secret\n");
        assert!(i.excluded("a.md"));
        assert!(!i.excluded("README.md"));
        assert!(!i.excluded("docs/a.md"));
        assert!(i.excluded("build"));
        assert!(i.excluded("build/x/y"));
        assert!(i.excluded("x/y/z.tmp"));
        assert!(i.excluded("z.tmp"));
        assert!(i.excluded("secret"));
        assert!(!i.excluded("src/main.rs"));
        assert!(glob("[a-c]?", "b1"));
        assert!(!glob("[^a-c]", "b"));
    }
}
