//! A small Go `text/template` engine: what `--format` needs (fields, variables, pipelines,
//! if/else/range/with, comments, trim markers) plus the functions docker's templates offer.

use crate::value::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template parsing error: template: :{line}: {msg}")]
    Parse { line: usize, msg: String },
    #[error("template: :{line}: executing \"\" at <{at}>: {msg}")]
    Exec {
        line: usize,
        at: String,
        msg: String,
    },
}

type Res<T> = Result<T, TemplateError>;

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    line: usize,
    text: String,
    decl: Vec<String>,
    /// `=` (assign to an existing variable) rather than `:=`.
    assign: bool,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// Unknown fields are errors (docker's formatter contexts are structs) instead of `<no value>`.
    pub strict: bool,
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>), // ".A.B" or "." (empty)
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    /// `)` optionally followed by `.A.B`
    RParen(Vec<String>),
    Pipe,
    Declare,
    Assign,
    Comma,
}

fn perr<T>(line: usize, msg: impl Into<String>) -> Res<T> {
    Err(TemplateError::Parse {
        line,
        msg: msg.into(),
    })
}

fn lex_fields(chars: &[char], i: &mut usize) -> Vec<String> {
    let mut fields = Vec::new();
    while *i < chars.len() && chars[*i] == '.' {
        let start = *i + 1;
        let mut j = start;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        if j == start {
            break;
        }
        fields.push(chars[start..j].iter().collect());
        *i = j;
    }
    fields
}

fn lex_action(src: &str, line: usize) -> Res<Vec<Tok>> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            ')' => {
                i += 1;
                let f = lex_fields(&chars, &mut i);
                toks.push(Tok::RParen(f));
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            '.' if chars
                .get(i + 1)
                .is_none_or(|n| !n.is_alphanumeric() && *n != '_') =>
            {
                toks.push(Tok::Field(Vec::new()));
                i += 1
            }
            '.' => {
                let f = lex_fields(&chars, &mut i);
                toks.push(Tok::Field(f));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let f = lex_fields(&chars, &mut i);
                toks.push(Tok::Var(name, f));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return perr(line, "unterminated quoted string"),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let e = chars.get(i + 1).copied();
                            s.push(match e {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some(o) => o,
                                None => return perr(line, "unterminated quoted string"),
                            });
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1
                        }
                    }
                }
                toks.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&ch| ch == '`')
                    .map(|p| p + start);
                let Some(end) = end else {
                    return perr(line, "unterminated raw quoted string");
                };
                toks.push(Tok::Str(chars[start..end].iter().collect()));
                i = end + 1;
            }
            '\'' => {
                // A character constant is a number in Go.
                let ch = chars.get(i + 1).copied().unwrap_or('\0');
                if chars.get(i + 2) != Some(&'\'') {
                    return perr(line, "unterminated character constant");
                }
                toks.push(Tok::Int(ch as i64));
                i += 3;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                if let Ok(n) = s.parse::<i64>() {
                    toks.push(Tok::Int(n));
                } else if let Ok(f) = s.parse::<f64>() {
                    toks.push(Tok::Float(f));
                } else {
                    return perr(line, format!("bad number syntax: {s:?}"));
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return perr(line, format!("unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------- parsing

struct TokStream {
    toks: Vec<Tok>,
    pos: usize,
    line: usize,
}

impl TokStream {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
}

fn parse_pipeline(ts: &mut TokStream, text: &str, in_paren: bool) -> Res<Pipeline> {
    let line = ts.line;
    let mut decl = Vec::new();
    let mut assign = false;
    // Declarations: `$x :=`, `$i, $v :=`, `$x =`.
    let save = ts.pos;
    let mut vars = Vec::new();
    while let Some(Tok::Var(name, f)) = ts.peek().cloned() {
        if !f.is_empty() {
            break;
        }
        ts.pos += 1;
        vars.push(name);
        match ts.peek() {
            Some(Tok::Comma) => {
                ts.pos += 1;
                continue;
            }
            Some(Tok::Declare) => {
                ts.pos += 1;
                decl = vars.clone();
                break;
            }
            Some(Tok::Assign) => {
                ts.pos += 1;
                decl = vars.clone();
                assign = true;
                break;
            }
            _ => break,
        }
    }
    if decl.is_empty() {
        ts.pos = save;
    }
    let mut cmds = Vec::new();
    let mut args = Vec::new();
    loop {
        match ts.next() {
            None => break,
            Some(Tok::RParen(f)) if in_paren => {
                // Hand the trailing fields back to the caller via a marker.
                ts.pos -= 1;
                ts.toks[ts.pos] = Tok::RParen(f);
                break;
            }
            Some(Tok::RParen(_)) => return perr(line, "unexpected right paren"),
            Some(Tok::Pipe) => {
                if args.is_empty() {
                    return perr(line, "missing command");
                }
                cmds.push(Command {
                    args: std::mem::take(&mut args),
                });
            }
            Some(Tok::Field(f)) => args.push(Arg::Dot(f)),
            Some(Tok::Var(n, f)) => args.push(Arg::Var(n, f)),
            Some(Tok::Ident(n)) => args.push(match n.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Ident(n),
            }),
            Some(Tok::Str(s)) => args.push(Arg::Str(s)),
            Some(Tok::Int(i)) => args.push(Arg::Int(i)),
            Some(Tok::Float(f)) => args.push(Arg::Float(f)),
            Some(Tok::LParen) => {
                let p = parse_pipeline(ts, text, true)?;
                match ts.next() {
                    Some(Tok::RParen(f)) => args.push(Arg::Sub(Box::new(p), f)),
                    _ => return perr(line, "unclosed left paren"),
                }
            }
            Some(t) => return perr(line, format!("unexpected {t:?} in operand")),
        }
    }
    if !args.is_empty() {
        cmds.push(Command { args });
    } else if !cmds.is_empty() {
        return perr(line, "missing command");
    }
    if cmds.is_empty() {
        return perr(line, "missing value for command");
    }
    Ok(Pipeline {
        line,
        text: text.trim().to_string(),
        decl,
        assign,
        cmds,
    })
}

enum Piece {
    Text(String),
    Action(String, usize),
}

/// Split source into text and action pieces, applying `{{-` / `-}}` trimming.
fn split_pieces(src: &str) -> Res<Vec<Piece>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
        }
        line += rest[..start].matches('\n').count();
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let body_start = if trim_left { 1 } else { 0 };
        let Some(end) = find_action_end(&after[body_start..]) else {
            return perr(line, "unclosed action");
        };
        let mut body = &after[body_start..body_start + end];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        let action_line = line;
        line += body.matches('\n').count();
        out.push(Piece::Action(body.to_string(), action_line));
        rest = &after[body_start + end + 2..];
    }
    let mut text = rest;
    if trim_next {
        text = text.trim_start();
    }
    if !text.is_empty() {
        out.push(Piece::Text(text.to_string()));
    }
    Ok(out)
}

/// Position of the `}}` closing an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

enum Stop {
    End,
    Else(Option<String>, usize),
    Eof,
}

fn parse_nodes(pieces: &[Piece], pos: &mut usize) -> Res<(Vec<Node>, Stop)> {
    let mut nodes = Vec::new();
    while *pos < pieces.len() {
        let piece = &pieces[*pos];
        *pos += 1;
        let (body, line) = match piece {
            Piece::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                continue;
            }
            Piece::Action(b, l) => (b.trim(), *l),
        };
        if body.starts_with("/*") {
            if !body.ends_with("*/") {
                return perr(line, "unclosed comment");
            }
            continue;
        }
        let (kw, rest) = match body.find(|c: char| c.is_whitespace()) {
            Some(i) => (&body[..i], body[i..].trim()),
            None => (body, ""),
        };
        match kw {
            "end" => return Ok((nodes, Stop::End)),
            "else" => {
                let r = if rest.is_empty() {
                    None
                } else {
                    Some(rest.to_string())
                };
                return Ok((nodes, Stop::Else(r, line)));
            }
            "if" | "range" | "with" => {
                let node = parse_control(kw, rest, line, pieces, pos)?;
                nodes.push(node);
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return perr(line, format!("{kw} is not supported"));
            }
            _ => {
                let mut ts = TokStream {
                    toks: lex_action(body, line)?,
                    pos: 0,
                    line,
                };
                nodes.push(Node::Action(parse_pipeline(&mut ts, body, false)?));
            }
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_control(
    kw: &str,
    rest: &str,
    line: usize,
    pieces: &[Piece],
    pos: &mut usize,
) -> Res<Node> {
    let mut ts = TokStream {
        toks: lex_action(rest, line)?,
        pos: 0,
        line,
    };
    let pipe = parse_pipeline(&mut ts, rest, false)?;
    let (body, stop) = parse_nodes(pieces, pos)?;
    let else_nodes = match stop {
        Stop::End => Vec::new(),
        Stop::Eof => return perr(line, format!("unexpected EOF in {kw}")),
        Stop::Else(None, _) => {
            let (e, stop2) = parse_nodes(pieces, pos)?;
            match stop2 {
                Stop::End => e,
                _ => return perr(line, format!("expected end in {kw}")),
            }
        }
        // `{{else if x}}` / `{{else with x}}`: a nested control sharing our `{{end}}`.
        Stop::Else(Some(r), l) => {
            let (kw2, rest2) = match r.find(|c: char| c.is_whitespace()) {
                Some(i) => (&r[..i], r[i..].trim()),
                None => (r.as_str(), ""),
            };
            if kw2 != "if" && kw2 != "with" {
                return perr(l, format!("unexpected {r:?} after else"));
            }
            vec![parse_control(kw2, rest2, l, pieces, pos)?]
        }
    };
    Ok(match kw {
        "if" => Node::If(pipe, body, else_nodes),
        "range" => Node::Range(pipe, body, else_nodes),
        _ => Node::With(pipe, body, else_nodes),
    })
}

impl Template {
    pub fn parse(src: &str) -> Res<Template> {
        let pieces = split_pieces(src)?;
        let mut pos = 0;
        let (nodes, stop) = parse_nodes(&pieces, &mut pos)?;
        match stop {
            Stop::Eof => Ok(Template {
                nodes,
                strict: false,
            }),
            Stop::End => perr(1, "unexpected {{end}}"),
            Stop::Else(..) => perr(1, "unexpected {{else}}"),
        }
    }

    /// Render with `data` as dot.
    pub fn render(&self, data: &Value) -> Res<String> {
        let mut st = State {
            vars: vec![("$".to_string(), data.clone())],
            out: String::new(),
            strict: self.strict,
        };
        st.walk(&self.nodes, data)?;
        Ok(st.out)
    }
}

// ---------------------------------------------------------------- execution

struct State {
    vars: Vec<(String, Value)>,
    out: String,
    strict: bool,
}

fn xerr<T>(p: &Pipeline, msg: impl Into<String>) -> Res<T> {
    Err(TemplateError::Exec {
        line: p.line,
        at: p.text.clone(),
        msg: msg.into(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Missing | Value::Null => "<nil>",
        Value::TypedNil(true) => "[]string",
        Value::TypedNil(false) => "map[string]string",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

impl State {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Res<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.to_string());
                    }
                }
                Node::If(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    let r = if v.truthy() {
                        self.walk(body, dot)
                    } else {
                        self.walk(els, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    let r = if v.truthy() {
                        self.walk(body, &v)
                    } else {
                        self.walk(els, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, els) => {
                    // Range's variables are the key/element, not the pipeline's value.
                    let plain = Pipeline {
                        decl: Vec::new(),
                        ..p.clone()
                    };
                    let v = self.pipeline(&plain, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::Int(i as i64), x))
                            .collect(),
                        Value::Object(mut o) => {
                            o.sort_by(|a, b| a.0.cmp(&b.0));
                            o.into_iter().map(|(k, x)| (Value::Str(k), x)).collect()
                        }
                        Value::Int(n) => (0..n.max(0))
                            .map(|i| (Value::Int(i), Value::Int(i)))
                            .collect(),
                        Value::Null | Value::Missing | Value::TypedNil(_) => Vec::new(),
                        other => return xerr(p, format!("range can't iterate over {other}")),
                    };
                    if items.is_empty() {
                        self.walk(els, dot)?;
                        continue;
                    }
                    for (k, x) in items {
                        let mark = self.vars.len();
                        match p.decl.len() {
                            0 => {}
                            1 => self.vars.push((p.decl[0].clone(), x.clone())),
                            _ => {
                                self.vars.push((p.decl[0].clone(), k));
                                self.vars.push((p.decl[1].clone(), x.clone()));
                            }
                        }
                        let r = self.walk(body, &x);
                        self.vars.truncate(mark);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Res<Value> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            last = Some(self.command(p, c, dot, last)?);
        }
        let v = last.unwrap_or(Value::Missing);
        if !p.decl.is_empty() {
            if p.assign {
                let name = &p.decl[0];
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return xerr(p, format!("undefined variable: {name}")),
                }
            } else {
                self.vars.push((p.decl[0].clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn field(&self, p: &Pipeline, mut v: Value, fields: &[String]) -> Res<Value> {
        for f in fields {
            v = match &v {
                Value::Object(_) => match v.get(f) {
                    Some(Value::Null) => typed_nil(f),
                    Some(x) => x.clone(),
                    None if self.strict => {
                        return xerr(
                            p,
                            format!("can't evaluate field {f} in type {}", type_name(&v)),
                        )
                    }
                    None => Value::Missing,
                },
                Value::Missing => Value::Missing,
                Value::Null | Value::TypedNil(_) => {
                    return xerr(p, format!("nil pointer evaluating interface {{}}.{f}"))
                }
                other => {
                    return xerr(
                        p,
                        format!("can't evaluate field {f} in type {}", type_name(other)),
                    )
                }
            };
        }
        Ok(v)
    }

    fn arg(&mut self, p: &Pipeline, a: &Arg, dot: &Value) -> Res<Value> {
        match a {
            Arg::Dot(f) => self.field(p, dot.clone(), f),
            Arg::Var(n, f) => {
                let v = match self.vars.iter().rev().find(|(vn, _)| vn == n) {
                    Some((_, v)) => v.clone(),
                    None => return xerr(p, format!("undefined variable: {n}")),
                };
                self.field(p, v, f)
            }
            Arg::Str(s) => Ok(Value::Str(s.clone())),
            Arg::Int(i) => Ok(Value::Int(*i)),
            Arg::Float(f) => Ok(Value::Float(*f)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Ok(Value::Null),
            Arg::Sub(sub, f) => {
                let v = self.pipeline(sub, dot)?;
                self.field(p, v, f)
            }
            Arg::Ident(name) => call(p, name, Vec::new()),
        }
    }

    fn command(
        &mut self,
        p: &Pipeline,
        c: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Res<Value> {
        let first = &c.args[0];
        if let Arg::Ident(name) = first {
            // `and`/`or` short-circuit in Go; evaluating all arguments is equivalent here since
            // our evaluation has no side effects beyond errors.
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(self.arg(p, a, dot)?);
            }
            if let Some(v) = piped {
                args.push(v);
            }
            return call(p, name, args);
        }
        let v = self.arg(p, first, dot)?;
        let mut rest = Vec::new();
        for a in &c.args[1..] {
            rest.push(self.arg(p, a, dot)?);
        }
        if let Some(x) = piped {
            rest.push(x);
        }
        if rest.is_empty() {
            return Ok(v);
        }
        // A "method" with arguments, like docker's `.Label "key"`: index the map it names.
        if let (Value::Object(_), [Value::Str(k)]) = (&v, rest.as_slice()) {
            return Ok(v.get(k).cloned().unwrap_or(Value::Str(String::new())));
        }
        xerr(p, format!("can't give argument to non-function {}", p.text))
    }
}

/// Docker's inspect fields whose Go type is a slice or a map: a `null` there prints as Go prints
/// a nil slice (`[]`) or map (`map[]`), as `docker inspect -f` does on its typed structs.
fn typed_nil(field: &str) -> Value {
    const SLICES: &[&str] = &[
        "Args",
        "Env",
        "Cmd",
        "Entrypoint",
        "OnBuild",
        "Shell",
        "Binds",
        "Links",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "ExtraHosts",
        "CapAdd",
        "CapDrop",
        "SecurityOpt",
        "ExecIDs",
        "Mounts",
        "RepoTags",
        "RepoDigests",
        "GroupAdd",
        "VolumesFrom",
        "Devices",
        "Ulimits",
        "MaskedPaths",
        "ReadonlyPaths",
        "Aliases",
        "DNSNames",
        "Layers",
        "Warnings",
        "SecondaryIPAddresses",
        "SecondaryIPv6Addresses",
        "DeviceCgroupRules",
        "DeviceRequests",
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
        "Names",
        "Ports",
        "Test",
    ];
    const MAPS: &[&str] = &[
        "Labels",
        "Volumes",
        "ExposedPorts",
        "Tmpfs",
        "Sysctls",
        "Networks",
        "Data",
        "Options",
        "StorageOpt",
        "DriverOpts",
        "Annotations",
        "PortBindings",
        "Config",
    ];
    if SLICES.contains(&field) {
        Value::TypedNil(true)
    } else if MAPS.contains(&field) {
        Value::TypedNil(false)
    } else {
        Value::Null
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_int(p: &Pipeline, v: &Value) -> Res<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => xerr(p, format!("expected integer; found {other}")),
    }
}

fn cmp_values(p: &Pipeline, a: &Value, b: &Value) -> Res<std::cmp::Ordering> {
    use std::cmp::Ordering;
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal));
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => xerr(
            p,
            "error calling comparison: incompatible types for comparison",
        ),
    }
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (
            Value::Missing | Value::Null | Value::TypedNil(_),
            Value::Missing | Value::Null | Value::TypedNil(_),
        ) => true,
        _ => a == b,
    }
}

/// Go's fmt.Sprint: spaces between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_string());
    }
    out
}

/// A subset of Go's fmt.Sprintf: verbs s, v, d, q, t, f with flags `-`, `0` and a width.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = it.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = 0usize;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = 0;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                it.next();
            }
            prec = Some(p);
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.get(ai) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        ai += 1;
        let s = match (verb, a) {
            ('q', v) => format!("{:?}", as_str(v)),
            ('f', Value::Int(i)) => format!("{:.*}", prec.unwrap_or(6), *i as f64),
            ('f', Value::Float(f)) => format!("{:.*}", prec.unwrap_or(6), f),
            ('s', v) => {
                let s = as_str(v);
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            (_, v) => v.to_string(),
        };
        let len = s.chars().count();
        if len >= width {
            out.push_str(&s);
        } else if left {
            out.push_str(&s);
            out.push_str(&" ".repeat(width - len));
        } else {
            let pad = if zero { "0" } else { " " };
            out.push_str(&pad.repeat(width - len));
            out.push_str(&s);
        }
    }
    out
}

fn call(p: &Pipeline, name: &str, args: Vec<Value>) -> Res<Value> {
    let want = |n: usize| -> Res<()> {
        if args.len() != n {
            return xerr(
                p,
                format!(
                    "wrong number of args for {name}: want {n} got {}",
                    args.len()
                ),
            );
        }
        Ok(())
    };
    match name {
        "json" => {
            want(1)?;
            Ok(Value::Str(args[0].to_json()))
        }
        "join" => {
            want(2)?;
            let sep = as_str(&args[1]);
            match &args[0] {
                Value::Array(a) => Ok(Value::Str(
                    a.iter().map(as_str).collect::<Vec<_>>().join(&sep),
                )),
                Value::Null | Value::Missing | Value::TypedNil(_) => Ok(Value::Str(String::new())),
                other => xerr(
                    p,
                    format!(
                        "error calling join: wrong type for value; expected []string; got {}",
                        type_name(other)
                    ),
                ),
            }
        }
        "split" => {
            want(2)?;
            let s = as_str(&args[0]);
            let sep = as_str(&args[1]);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(Value::str).collect()
            };
            Ok(Value::Array(parts))
        }
        "lower" => {
            want(1)?;
            Ok(Value::Str(as_str(&args[0]).to_lowercase()))
        }
        "upper" => {
            want(1)?;
            Ok(Value::Str(as_str(&args[0]).to_uppercase()))
        }
        "title" => {
            want(1)?;
            let s = as_str(&args[0]);
            let mut out = String::new();
            let mut start = true;
            for c in s.chars() {
                if start && c.is_alphabetic() {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric() && c != '\'';
            }
            Ok(Value::Str(out))
        }
        "pad" => {
            want(3)?;
            let s = as_str(&args[0]);
            let before = as_int(p, &args[1])?.max(0) as usize;
            let after = as_int(p, &args[2])?.max(0) as usize;
            Ok(Value::Str(format!(
                "{}{s}{}",
                " ".repeat(before),
                " ".repeat(after)
            )))
        }
        "truncate" => {
            want(2)?;
            let s = as_str(&args[0]);
            let n = as_int(p, &args[1])?.max(0) as usize;
            Ok(Value::Str(s.chars().take(n).collect()))
        }
        "print" => Ok(Value::Str(sprint(&args))),
        "println" => {
            let mut s = args
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            s.push('\n');
            Ok(Value::Str(s))
        }
        "printf" => {
            if args.is_empty() {
                return xerr(p, "wrong number of args for printf: want at least 1 got 0");
            }
            Ok(Value::Str(sprintf(&as_str(&args[0]), &args[1..])))
        }
        "len" => {
            want(1)?;
            match &args[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::Array(a) => Ok(Value::Int(a.len() as i64)),
                Value::Object(o) => Ok(Value::Int(o.len() as i64)),
                Value::Null | Value::Missing | Value::TypedNil(_) => Ok(Value::Int(0)),
                other => xerr(
                    p,
                    format!("error calling len: len of type {}", type_name(other)),
                ),
            }
        }
        "index" => {
            if args.is_empty() {
                return xerr(p, "wrong number of args for index: want at least 1 got 0");
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::Object(_), key) => {
                        v.get(&as_str(key)).cloned().unwrap_or(Value::Missing)
                    }
                    (Value::Array(a), i) => {
                        let i = as_int(p, i)?;
                        match usize::try_from(i).ok().and_then(|i| a.get(i)) {
                            Some(x) => x.clone(),
                            None => {
                                return xerr(
                                    p,
                                    format!("error calling index: index out of range: {i}"),
                                )
                            }
                        }
                    }
                    (Value::Str(s), i) => {
                        let i = as_int(p, i)?;
                        match usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i)) {
                            Some(b) => Value::Int(*b as i64),
                            None => {
                                return xerr(
                                    p,
                                    format!("error calling index: index out of range: {i}"),
                                )
                            }
                        }
                    }
                    (Value::Null | Value::Missing | Value::TypedNil(_), _) => Value::Missing,
                    (other, _) => {
                        return xerr(
                            p,
                            format!(
                                "error calling index: can't index item of type {}",
                                type_name(other)
                            ),
                        )
                    }
                };
            }
            Ok(v)
        }
        "slice" => {
            if args.is_empty() {
                return xerr(p, "wrong number of args for slice");
            }
            let from = match args.get(1) {
                Some(v) => as_int(p, v)?.max(0) as usize,
                None => 0,
            };
            match &args[0] {
                Value::Str(s) => {
                    let to = match args.get(2) {
                        Some(v) => as_int(p, v)?.max(0) as usize,
                        None => s.len(),
                    };
                    match s.get(from..to) {
                        Some(x) => Ok(Value::str(x)),
                        None => xerr(p, "error calling slice: index out of range"),
                    }
                }
                Value::Array(a) => {
                    let to = match args.get(2) {
                        Some(v) => as_int(p, v)?.max(0) as usize,
                        None => a.len(),
                    };
                    match a.get(from..to) {
                        Some(x) => Ok(Value::Array(x.to_vec())),
                        None => xerr(p, "error calling slice: index out of range"),
                    }
                }
                other => xerr(
                    p,
                    format!(
                        "error calling slice: can't slice item of type {}",
                        type_name(other)
                    ),
                ),
            }
        }
        "not" => {
            want(1)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "and" => {
            if args.is_empty() {
                return xerr(p, "wrong number of args for and");
            }
            Ok(args
                .iter()
                .find(|a| !a.truthy())
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "or" => {
            if args.is_empty() {
                return xerr(p, "wrong number of args for or");
            }
            Ok(args
                .iter()
                .find(|a| a.truthy())
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "eq" => {
            if args.len() < 2 {
                return xerr(p, "wrong number of args for eq: want at least 2");
            }
            Ok(Value::Bool(
                args[1..].iter().any(|b| values_eq(&args[0], b)),
            ))
        }
        "ne" => {
            want(2)?;
            Ok(Value::Bool(!values_eq(&args[0], &args[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = cmp_values(p, &args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        _ => perr_exec(p, name),
    }
}

fn perr_exec<T>(p: &Pipeline, name: &str) -> Res<T> {
    Err(TemplateError::Parse {
        line: p.line,
        msg: format!("function {name:?} not defined"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, data: &str) -> String {
        let v = Value::from_json(data.as_bytes()).expect("json");
        match Template::parse(t).and_then(|t| t.render(&v)) {
            Ok(s) => s,
            Err(e) => format!("ERR {e}"),
        }
    }

    const C: &str = r#"{"Id":"abc","Name":"/web","State":{"Status":"running","Pid":42,"Running":true},
        "Config":{"Env":["A=1","B=2"],"Labels":{"z":"1","a":"2"},"Cmd":null},
        "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2"}}},"Count":0}"#;

    #[test]
    fn fields_and_json() {
        assert_eq!(render("{{.State.Status}}", C), "running");
        assert_eq!(render("{{.State.Pid}} {{.Name}}", C), "42 /web");
        assert_eq!(render("{{json .Config.Labels}}", C), r#"{"z":"1","a":"2"}"#);
        assert_eq!(render("{{.Config.Env}}", C), "[A=1 B=2]");
        assert_eq!(render("{{.Config.Labels}}", C), "map[a:2 z:1]");
        assert_eq!(render("{{.Nope}}", C), "<no value>");
        assert_eq!(render("{{.Config.Cmd}}", C), "[]");
        assert_eq!(render("{{json .Config.Cmd}}", C), "null");
        assert_eq!(
            render(r#"{{.State.Health}}"#, r#"{"State":{"Health":null}}"#),
            "<nil>"
        );
        assert_eq!(render("{{ . | json }}", r#""x""#), r#""x""#);
    }

    #[test]
    fn control_flow() {
        assert_eq!(
            render("{{if .State.Running}}up{{else}}down{{end}}", C),
            "up"
        );
        assert_eq!(
            render("{{if .Count}}a{{else if .Id}}b{{else}}c{{end}}", C),
            "b"
        );
        assert_eq!(
            render("{{range .Config.Env}}[{{.}}]{{end}}", C),
            "[A=1][B=2]"
        );
        assert_eq!(
            render("{{range $i, $e := .Config.Env}}{{$i}}={{$e}};{{end}}", C),
            "0=A=1;1=B=2;"
        );
        assert_eq!(
            render(
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{end}}",
                C
            ),
            "bridge 172.17.0.2"
        );
        assert_eq!(
            render("{{range .Config.Cmd}}x{{else}}none{{end}}", C),
            "none"
        );
        assert_eq!(render("{{with .State}}{{.Status}}{{end}}", C), "running");
        assert_eq!(render("{{$n := .Name}}{{$n}}", C), "/web");
        assert_eq!(render("{{/* comment */}}ok", C), "ok");
        assert_eq!(render("a  {{- .Id -}}  b", C), "aabcb");
    }

    #[test]
    fn functions() {
        assert_eq!(render(r#"{{join .Config.Env ","}}"#, C), "A=1,B=2");
        assert_eq!(render(r#"{{index .Config.Labels "a"}}"#, C), "2");
        assert_eq!(render(r#"{{index .Config.Env 1}}"#, C), "B=2");
        assert_eq!(
            render(
                r#"{{(index .NetworkSettings.Networks "bridge").IPAddress}}"#,
                C
            ),
            "172.17.0.2"
        );
        assert_eq!(
            render("{{lower \"ABC\"}}{{upper .State.Status}}", C),
            "abcRUNNING"
        );
        assert_eq!(render("{{.State.Status | upper}}", C), "RUNNING");
        assert_eq!(render("{{println .Id}}x", C), "abc\nx");
        assert_eq!(render("{{title \"hello world\"}}", C), "Hello World");
        assert_eq!(render(r#"{{split "a:b" ":"}}"#, C), "[a b]");
        assert_eq!(render("{{len .Config.Env}}", C), "2");
        assert_eq!(
            render(r#"{{if eq .State.Status "running" "paused"}}y{{end}}"#, C),
            "y"
        );
        assert_eq!(
            render(r#"{{if and .State.Running (not .Count)}}y{{end}}"#, C),
            "y"
        );
        assert_eq!(
            render(r#"{{printf "%-5s|%3d" .Id .State.Pid}}"#, C),
            "abc  | 42"
        );
        assert_eq!(render("{{if gt .State.Pid 10}}big{{end}}", C), "big");
    }

    #[test]
    fn errors() {
        assert!(render("{{.Id", C).starts_with("ERR template parsing error"));
        assert!(render("{{if .Id}}x", C).starts_with("ERR template parsing error"));
        assert!(render("{{nosuch .Id}}", C).contains("function \"nosuch\" not defined"));
        assert!(render("{{.Id.Foo}}", C).contains("can't evaluate field Foo in type string"));
        let mut t = Template::parse("{{.Foo}}").expect("parse");
        t.strict = true;
        assert!(t.render(&Value::Object(vec![])).is_err());
    }

    #[test]
    fn label_method() {
        let d = r#"{"Label":{"com.x":"1"}}"#;
        assert_eq!(render(r#"{{.Label "com.x"}}"#, d), "1");
        assert_eq!(render(r#"{{.Label "nope"}}"#, d), "");
    }
}
