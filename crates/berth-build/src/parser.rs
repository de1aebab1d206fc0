//! The Dockerfile parser: parser directives, comments, line continuations, heredocs and the
//! per-instruction argument grammars. The result is a tree of [`Node`]s whose `dump` is the
//! s-expression form of the conformance corpus.

use crate::shell::Lexer;
use std::fmt;

/// A parse error, with the 1-based line range of the instruction it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub start_line: usize,
    pub end_line: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.start_line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One argument of an instruction: a word, or (ONBUILD) a whole sub-instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Word(String),
    Sub(Box<Node>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted marker: `$VAR`s in the content are expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    pub fd: u32,
}

/// One instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword as written (`from`, `RUN`, ...).
    pub cmd: String,
    /// Leading `--flag` words.
    pub flags: Vec<String>,
    pub args: Vec<Arg>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// The instruction line, continuations joined.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    pub start_line: usize,
    pub end_line: usize,
}

impl Node {
    /// The words of the arguments (a sub-instruction counts as none).
    pub fn words(&self) -> Vec<String> {
        self.args
            .iter()
            .filter_map(|a| match a {
                Arg::Word(w) => Some(w.clone()),
                Arg::Sub(_) => None,
            })
            .collect()
    }

    /// `(cmd ["--flag"] "arg" ...)` without the parentheses, as BuildKit's `Node.Dump`.
    pub fn dump(&self) -> String {
        let mut s = self.cmd.to_lowercase();
        if !self.flags.is_empty() {
            s.push(' ');
            s.push('[');
            let q: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&q.join(" "));
            s.push(']');
        }
        for a in &self.args {
            match a {
                Arg::Word(w) => {
                    s.push(' ');
                    s.push_str(&go_quote(w));
                }
                Arg::Sub(n) => {
                    s.push_str(" (");
                    s.push_str(&n.dump());
                    s.push(')');
                }
            }
        }
        s.trim().to_string()
    }
}

/// A string quoted as Go's `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\u{7}' => o.push_str("\\a"),
            '\u{8}' => o.push_str("\\b"),
            '\u{c}' => o.push_str("\\f"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '\u{b}' => o.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, Default)]
pub struct Dockerfile {
    pub children: Vec<Node>,
    pub escape: char,
    pub syntax: Option<String>,
    pub warnings: Vec<String>,
    pub start_line: usize,
    pub end_line: usize,
}

impl Dockerfile {
    /// One `(…)` line per instruction.
    pub fn dump(&self) -> String {
        self.children
            .iter()
            .map(|c| format!("({})\n", c.dump()))
            .collect()
    }
}

struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    /// Looks at one more line for a `# key=value` directive; directives are only read
    /// before anything else.
    fn line(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((k, v)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let k = k.to_ascii_lowercase();
        if !matches!(k.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&k) {
            return Err(format!("only one {k} parser directive can be used"));
        }
        self.seen.push(k.clone());
        match k.as_str() {
            "escape" => match v {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => return Err(format!("invalid escape token '{v}' does not match ` or \\")),
            },
            "syntax" => self.syntax = Some(v.to_string()),
            _ => {}
        }
        Ok(())
    }
}

/// `#[ \t]*key[ \t]*=[ \t]*value[ \t]*` with key `[a-zA-Z][a-zA-Z0-9]*`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let klen = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if klen == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(klen);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

fn trim_newline(s: &str) -> &str {
    s.strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(s)
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Removes a trailing continuation (escape token plus blanks) unless the token is itself
/// escaped. Returns the line and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(body) = t.strip_suffix(escape) {
        if !body.ends_with(escape) {
            return (body.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// Splits into lines, keeping each line's newline (heredoc bodies keep their line endings).
fn lines_keep_newline(src: &str) -> Vec<&str> {
    src.split_inclusive('\n').collect()
}

pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines = lines_keep_newline(src);
    let mut d = Directives {
        escape: '\\',
        syntax: None,
        seen: Vec::new(),
        done: false,
    };
    let mut out = Dockerfile {
        escape: '\\',
        ..Default::default()
    };
    let mut i = 0usize; // index of the next line to read
    let loc = |m: String, s: usize, e: usize| ParseError {
        message: m,
        start_line: s,
        end_line: e,
    };
    while i < lines.len() {
        let raw = trim_newline(lines[i]);
        let first = raw.trim_start_matches([' ', '\t', '\r', '\n', '\u{b}', '\u{c}']);
        d.line(first).map_err(|m| loc(m, i + 1, i + 1))?;
        let first = if first.starts_with('#') { "" } else { first };
        i += 1;
        let start = i;
        let (mut line, mut end) = trim_continuation(first, d.escape);
        if end && line.is_empty() {
            continue;
        }
        let mut empty_cont = false;
        while !end && i < lines.len() {
            let raw = trim_newline(lines[i]);
            d.line(raw).map_err(|m| loc(m, i + 1, i + 1))?;
            i += 1;
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_cont = true;
                continue;
            }
            let (l, e) = trim_continuation(raw, d.escape);
            line.push_str(&l);
            end = e;
        }
        if empty_cont {
            out.warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }
        let mut node = node_from_line(&line, d.escape).map_err(|m| loc(m, start, i))?;
        if can_contain_heredoc(&node) && line.contains("<<") {
            let docs = heredocs_from_line(&line).map_err(|m| loc(m, start, i))?;
            let target = match node.args.first_mut() {
                Some(Arg::Sub(sub)) if node.cmd.eq_ignore_ascii_case("onbuild") => sub.as_mut(),
                _ => &mut node,
            };
            for mut doc in docs {
                let mut terminated = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let mut cand = trim_newline(l);
                    if doc.chomp {
                        cand = cand.trim_start_matches('\t');
                    }
                    if cand == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(l);
                }
                if !terminated {
                    return Err(loc("unterminated heredoc".into(), start, i));
                }
                target.heredocs.push(doc);
            }
        }
        node.start_line = start;
        node.end_line = i;
        if out.children.is_empty() {
            out.start_line = start;
        }
        out.end_line = i;
        out.children.push(node);
    }
    out.escape = d.escape;
    out.syntax = d.syntax;
    if out.children.is_empty() {
        return Err(loc("file with no instructions".into(), lines.len(), 0));
    }
    Ok(out)
}

fn can_contain_heredoc(n: &Node) -> bool {
    let n = match n.args.first() {
        Some(Arg::Sub(sub)) if n.cmd.eq_ignore_ascii_case("onbuild") => sub.as_ref(),
        _ => n,
    };
    let c = n.cmd.to_ascii_lowercase();
    matches!(c.as_str(), "run" | "copy" | "add") && !n.json
}

/// `[fd]<<[-]WORD` words of the line.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let raw = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    let empty: Vec<String> = Vec::new();
    let words = raw.process_words(line, &empty).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        let digits = w.chars().take_while(char::is_ascii_digit).count();
        let Some(rest) = w[digits..].strip_prefix("<<") else {
            continue;
        };
        let (chomp, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if rest.is_empty() || rest.contains('<') {
            continue;
        }
        let plain = Lexer {
            skip_unset: true,
            ..Lexer::new('\\')
        };
        let words = plain.process_words(rest, &empty).map_err(|e| e.0)?;
        if words.len() != 1 {
            continue;
        }
        let quoted = Lexer {
            raw_quotes: true,
            skip_unset: true,
            ..Lexer::new('\\')
        };
        let raw_words = quoted.process_words(rest, &empty).map_err(|e| e.0)?;
        let count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
        let expand = raw_words.len() == 1 && count(&words[0]) == count(&raw_words[0]);
        docs.push(Heredoc {
            name: words[0].clone(),
            content: String::new(),
            expand,
            chomp,
            fd: w[..digits].parse().unwrap_or(0),
        });
    }
    Ok(docs)
}

fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let t = line.trim();
    let (cmd, rest) = match t.find(char::is_whitespace) {
        Some(p) => (&t[..p], t[p..].trim_start()),
        None => (t, ""),
    };
    let (rest, flags) = extract_flags(rest);
    let rest = rest.trim();
    let (args, json) = match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(rest)?,
        "arg" => (words_args(parse_words(rest, escape)), false),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(rest)?,
        "env" => (name_val(rest, "ENV", escape)?, false),
        "label" => (name_val(rest, "LABEL", escape)?, false),
        "expose" | "from" => (whitespace_list(rest), false),
        "healthcheck" => health(rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (single(rest), false),
        "onbuild" => {
            if rest.is_empty() {
                (Vec::new(), false)
            } else {
                let sub = node_from_line(rest, escape)?;
                (vec![Arg::Sub(Box::new(sub))], false)
            }
        }
        // Unknown instructions are rejected when the tree becomes instructions.
        _ => (Vec::new(), false),
    };
    Ok(Node {
        cmd: cmd.to_string(),
        flags,
        args,
        json,
        original: line.to_string(),
        ..Default::default()
    })
}

fn words_args(w: Vec<String>) -> Vec<Arg> {
    w.into_iter().map(Arg::Word).collect()
}

fn single(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![Arg::Word(rest.to_string())]
    }
}

fn whitespace_list(rest: &str) -> Vec<Arg> {
    rest.split_whitespace()
        .map(|w| Arg::Word(w.to_string()))
        .collect()
}

#[derive(PartialEq, Eq)]
enum JsonErr {
    NotJson,
    NotStrings,
}

/// A JSON array of strings at the start of `rest`; what follows the array is ignored, as
/// Go's JSON decoder does.
fn parse_json(rest: &str) -> Result<Vec<String>, JsonErr> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonErr::NotJson);
    }
    let mut it = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    match it.next() {
        Some(Ok(serde_json::Value::Array(items))) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(JsonErr::NotStrings),
            })
            .collect(),
        _ => Err(JsonErr::NotJson),
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    if rest.starts_with('[') {
        match parse_json(rest) {
            Ok(v) => return Ok((words_args(v), true)),
            Err(JsonErr::NotStrings) => return Err(NOT_STRINGS.into()),
            Err(JsonErr::NotJson) => {}
        }
    }
    Ok((single(rest), false))
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    match parse_json(rest) {
        Ok(v) => Ok((words_args(v), true)),
        Err(JsonErr::NotStrings) => Err(NOT_STRINGS.into()),
        Err(JsonErr::NotJson) => Ok((whitespace_list(rest), false)),
    }
}

/// `HEALTHCHECK [flags] NONE` or `HEALTHCHECK [flags] CMD command`.
fn health(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    let (kind, cmd) = match rest.find(char::is_whitespace) {
        Some(p) => (&rest[..p], rest[p..].trim_start()),
        None => (rest, ""),
    };
    let mut args = vec![Arg::Word(kind.to_string())];
    let mut json = false;
    if !cmd.is_empty() {
        let (a, j) = maybe_json(cmd)?;
        args.extend(a);
        json = j;
    }
    Ok((args, json))
}

/// `KEY value` (old form: one pair, the value is the rest of the line) or
/// `KEY=value KEY2=value2` (each pair a word; quotes are kept for later processing).
/// Nodes come in threes: key, value, separator.
fn name_val(rest: &str, key: &str, escape: char) -> Result<Vec<Arg>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(p) = rest.find(char::is_whitespace) else {
            return Err(format!("{key} must have two arguments"));
        };
        let (k, v) = (&rest[..p], rest[p..].trim_start());
        return Ok(words_args(vec![k.into(), v.into(), String::new()]));
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            ));
        };
        out.extend(words_args(vec![k.into(), v.into(), "=".into()]));
    }
    Ok(out)
}

/// Splits on blanks outside quotes; quotes and escapes are kept in the words.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match quote {
            None if c.is_whitespace() => {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                in_word = false;
                continue;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
        }
        if c == escape && quote != Some('\'') {
            match chars.get(i) {
                Some(&next) => {
                    word.push(c);
                    word.push(next);
                    i += 1;
                }
                // An escape token at the very end is dropped.
                None => quote = None,
            }
            continue;
        }
        word.push(c);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Leading `--name[=value]` words; a bare `--` ends them. Returns the rest of the line.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut pos = 0;
    let b = line.as_bytes();
    loop {
        while pos < b.len() && (b[pos] as char).is_ascii_whitespace() {
            pos += 1;
        }
        if !line[pos..].starts_with("--") {
            return (&line[pos..], flags);
        }
        // One word, with quotes and escapes honoured.
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut blank_ok = false;
        let mut chars = line[pos..].char_indices().peekable();
        let mut end = line.len();
        while let Some((off, c)) = chars.next() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                } else if c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    } else {
                        quote = None;
                    }
                } else {
                    word.push(c);
                }
                continue;
            }
            if c.is_whitespace() {
                end = pos + off;
                break;
            }
            match c {
                '\'' | '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    }
                }
                c => word.push(c),
            }
        }
        if word == "--" {
            return (&line[end..], flags);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
        if end >= line.len() {
            return ("", flags);
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_run() {
        let df = parse("FROM a\nRUN <<EOF\necho $X\n  hi\nEOF\nRUN x\n").unwrap();
        let run = &df.children[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].content, "echo $X\n  hi\n");
        assert!(run.heredocs[0].expand);
        assert_eq!(df.children[2].start_line, 6);
    }

    #[test]
    fn heredoc_quoted_and_chomp() {
        let df = parse("FROM a\nCOPY <<-'EOT' /f\n\tx\n\tEOT\n").unwrap();
        let d = &df.children[1].heredocs[0];
        assert!(!d.expand && d.chomp);
        assert_eq!(d.name, "EOT");
    }

    #[test]
    fn unterminated_heredoc() {
        let e = parse("FROM a\nRUN <<EOF\nx\n").unwrap_err();
        assert_eq!(e.message, "unterminated heredoc");
        assert_eq!(e.start_line, 2);
    }

    #[test]
    fn flags_with_quotes() {
        let (rest, f) = extract_flags("--mount=type=cache,target=\"/a b\" --network=none echo hi");
        assert_eq!(f, vec!["--mount=type=cache,target=/a b", "--network=none"]);
        assert_eq!(rest, "echo hi");
    }
}
