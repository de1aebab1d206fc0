//! The parse tree as typed instructions grouped in stages. Variables are not expanded here:
//! that needs the build's state (ARG/ENV values at each point), so the builder does it.

use crate::parser::{Arg, Dockerfile, Heredoc, Node};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for InstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for InstructionError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    /// `NONE`, or the test as Docker stores it: `["CMD", ...]` / `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySpec {
    pub add: bool,
    pub srcs: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    /// `--parents`: sources keep their path (after a `/./` pivot) under the destination.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Run {
        args: Vec<String>,
        json: bool,
        heredocs: Vec<Heredoc>,
        network: Option<String>,
        mounts: Vec<String>,
        /// `--security=insecure|sandbox`.
        security: Option<String>,
    },
    Copy(CopySpec),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Cmd {
        args: Vec<String>,
        json: bool,
    },
    Entrypoint {
        args: Vec<String>,
        json: bool,
    },
    Shell(Vec<String>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(HealthSpec),
    Onbuild(String),
    Maintainer(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub kind: Kind,
    /// The instruction as written (continuations joined), for `Step N/M : ...`.
    pub original: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub name: Option<String>,
    pub base: String,
    pub platform: Option<String>,
    pub commands: Vec<Command>,
    pub original: String,
    pub line: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stages {
    /// `ARG`s before the first `FROM`.
    pub meta_args: Vec<Command>,
    pub stages: Vec<Stage>,
}

impl Stages {
    /// The index of a stage named `name` (case-insensitive), or given by number.
    pub fn find(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&i| i < self.stages.len())
            })
    }
}

/// Flags of one instruction, checked against what it accepts.
struct Flags {
    cmd: String,
    line: usize,
    parsed: Vec<(String, Option<String>)>,
}

impl Flags {
    fn new(n: &Node, allowed: &[&str]) -> Result<Flags, InstructionError> {
        let mut parsed = Vec::new();
        for f in &n.flags {
            let body = f.strip_prefix("--").unwrap_or(f);
            let (k, v) = match body.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if !allowed.contains(&k.as_str()) {
                return Err(InstructionError {
                    line: n.start_line,
                    message: format!("Unknown flag: {k}"),
                });
            }
            parsed.push((k, v));
        }
        Ok(Flags {
            cmd: n.cmd.to_ascii_uppercase(),
            line: n.start_line,
            parsed,
        })
    }

    fn string(&self, name: &str) -> Result<Option<String>, InstructionError> {
        match self.parsed.iter().rev().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, Some(v))) => Ok(Some(v.clone())),
            Some((_, None)) => Err(InstructionError {
                line: self.line,
                message: format!("Missing a value on flag: {name}"),
            }),
        }
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.parsed
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn bool(&self, name: &str) -> Result<bool, InstructionError> {
        match self.parsed.iter().rev().find(|(k, _)| k == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(InstructionError {
                    line: self.line,
                    message: format!("expecting boolean value for flag {name}, not: {v}"),
                }),
            },
        }
    }

    fn duration(&self, name: &str) -> Result<Option<i64>, InstructionError> {
        let Some(v) = self.string(name)? else {
            return Ok(None);
        };
        parse_duration(&v)
            .map(Some)
            .ok_or_else(|| InstructionError {
                line: self.line,
                message: format!("{} --{name}: time: invalid duration \"{v}\"", self.cmd),
            })
    }
}

/// A Go duration (`1m30s`, `500ms`, `0`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

fn err<T>(n: &Node, m: impl Into<String>) -> Result<T, InstructionError> {
    Err(InstructionError {
        line: n.start_line,
        message: m.into(),
    })
}

fn pairs(n: &Node) -> Vec<(String, String)> {
    n.words()
        .chunks(3)
        .filter(|c| c.len() >= 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn command(n: &Node) -> Result<Command, InstructionError> {
    let words = n.words();
    let upper = n.cmd.to_ascii_uppercase();
    let at_least = |k: usize| -> Result<(), InstructionError> {
        if words.len() < k {
            let m = match k {
                1 => format!("{upper} requires at least one argument"),
                _ => format!("{upper} requires at least two arguments"),
            };
            return err(n, m);
        }
        Ok(())
    };
    let exactly_one = || -> Result<String, InstructionError> {
        if words.len() != 1 {
            return err(n, format!("{upper} requires exactly one argument"));
        }
        Ok(words[0].clone())
    };
    let kind = match upper.as_str() {
        "RUN" => {
            let f = Flags::new(n, &["mount", "network", "security"])?;
            if words.is_empty() && n.heredocs.is_empty() {
                return err(n, "RUN requires at least one argument");
            }
            Kind::Run {
                args: words,
                json: n.json,
                heredocs: n.heredocs.clone(),
                network: f.string("network")?,
                mounts: f.all("mount"),
                security: f.string("security")?,
            }
        }
        "COPY" | "ADD" => {
            let add = upper == "ADD";
            let allowed: &[&str] = if add {
                &[
                    "chown",
                    "chmod",
                    "link",
                    "keep-git-dir",
                    "checksum",
                    "platform",
                    "exclude",
                ]
            } else {
                &[
                    "from", "chown", "chmod", "link", "parents", "platform", "exclude",
                ]
            };
            let f = Flags::new(n, allowed)?;
            if words.len() < 2 {
                return err(n, format!("{upper} requires at least two arguments, but only one was provided. Destination could not be determined."));
            }
            let mut srcs = words;
            let dest = srcs.pop().unwrap_or_default();
            // Heredoc markers stand for the inline files.
            if !n.heredocs.is_empty() {
                srcs.retain(|s| !s.contains("<<"));
            }
            Kind::Copy(CopySpec {
                add,
                srcs,
                dest,
                from: f.string("from")?,
                chown: f.string("chown")?,
                chmod: f.string("chmod")?,
                link: f.bool("link")?,
                keep_git_dir: f.bool("keep-git-dir")?,
                checksum: f.string("checksum")?,
                parents: f.bool("parents")?,
                exclude: f.all("exclude"),
                heredocs: n.heredocs.clone(),
            })
        }
        "ENV" | "LABEL" => {
            Flags::new(n, &[])?;
            at_least(1)?;
            let p = pairs(n);
            if p.iter().any(|(k, _)| k.is_empty()) {
                return err(n, format!("{upper} names can not be blank"));
            }
            if upper == "ENV" {
                Kind::Env(p)
            } else {
                Kind::Label(p)
            }
        }
        "ARG" => {
            Flags::new(n, &[])?;
            at_least(1)?;
            let mut out = Vec::new();
            for w in words {
                match w.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((w, None)),
                }
            }
            if out.iter().any(|(k, _)| k.is_empty()) {
                return err(n, "ARG names can not be blank");
            }
            Kind::Arg(out)
        }
        "WORKDIR" => {
            Flags::new(n, &[])?;
            Kind::Workdir(exactly_one()?)
        }
        "USER" => {
            Flags::new(n, &[])?;
            Kind::User(exactly_one()?)
        }
        "STOPSIGNAL" => {
            Flags::new(n, &[])?;
            Kind::StopSignal(exactly_one()?)
        }
        "MAINTAINER" => {
            Flags::new(n, &[])?;
            Kind::Maintainer(exactly_one()?)
        }
        "CMD" => {
            Flags::new(n, &[])?;
            Kind::Cmd {
                args: words,
                json: n.json,
            }
        }
        "ENTRYPOINT" => {
            Flags::new(n, &[])?;
            Kind::Entrypoint {
                args: words,
                json: n.json,
            }
        }
        "SHELL" => {
            Flags::new(n, &[])?;
            if !n.json {
                return err(n, "SHELL requires the arguments to be in JSON form");
            }
            if words.is_empty() {
                return err(n, "SHELL requires at least one argument");
            }
            Kind::Shell(words)
        }
        "EXPOSE" => {
            Flags::new(n, &[])?;
            at_least(1)?;
            Kind::Expose(words)
        }
        "VOLUME" => {
            Flags::new(n, &[])?;
            at_least(1)?;
            if words.iter().any(|w| w.trim().is_empty()) {
                return err(n, "VOLUME specified can not be an empty string");
            }
            Kind::Volume(words)
        }
        "HEALTHCHECK" => {
            let f = Flags::new(
                n,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
            )?;
            at_least(1)?;
            let typ = words[0].to_ascii_uppercase();
            let test = match typ.as_str() {
                "NONE" => {
                    if words.len() > 1 || !n.flags.is_empty() {
                        return err(n, "HEALTHCHECK NONE takes no arguments");
                    }
                    vec!["NONE".to_string()]
                }
                "CMD" => {
                    let rest = &words[1..];
                    if rest.is_empty() {
                        return err(n, "Missing command after HEALTHCHECK CMD");
                    }
                    if n.json {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(rest.iter().cloned());
                        t
                    } else {
                        vec!["CMD-SHELL".to_string(), rest[0].clone()]
                    }
                }
                _ => {
                    return err(
                        n,
                        format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"),
                    )
                }
            };
            let retries = match f.string("retries")? {
                None => None,
                Some(r) => match r.parse::<i64>() {
                    Ok(v) if v >= 0 => Some(v),
                    _ => {
                        return err(
                            n,
                            format!("--retries must be a non-negative integer, got {r}"),
                        )
                    }
                },
            };
            Kind::Healthcheck(HealthSpec {
                test,
                interval: f.duration("interval")?,
                timeout: f.duration("timeout")?,
                start_period: f.duration("start-period")?,
                start_interval: f.duration("start-interval")?,
                retries,
            })
        }
        "ONBUILD" => {
            Flags::new(n, &[])?;
            let Some(Arg::Sub(sub)) = n.args.first() else {
                return err(n, "ONBUILD requires at least one argument");
            };
            let sc = sub.cmd.to_ascii_uppercase();
            match sc.as_str() {
                "ONBUILD" => return err(n, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
                "FROM" | "MAINTAINER" => {
                    return err(n, format!("{sc} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            command(sub)?;
            let orig = sub.original.trim();
            Kind::Onbuild(orig.to_string())
        }
        "FROM" => return err(n, "FROM in the wrong place"),
        _ => return err(n, format!("unknown instruction: {}", n.cmd)),
    };
    Ok(Command {
        kind,
        original: n.original.trim().to_string(),
        line: n.start_line,
    })
}

/// Groups the instructions into stages; checks every instruction's arguments and flags.
pub fn parse_stages(df: &Dockerfile) -> Result<Stages, InstructionError> {
    let mut out = Stages::default();
    for n in &df.children {
        if n.cmd.eq_ignore_ascii_case("from") {
            let f = Flags::new(n, &["platform"])?;
            let w = n.words();
            let (base, name) = match w.as_slice() {
                [b] => (b.clone(), None),
                [b, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && lower
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                    if !valid {
                        return err(n, format!("invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"));
                    }
                    if out
                        .stages
                        .iter()
                        .any(|s| s.name.as_deref() == Some(lower.as_str()))
                    {
                        return err(n, format!("duplicate name {name}"));
                    }
                    (b.clone(), Some(lower))
                }
                [] => return err(n, "FROM requires either one or three arguments"),
                _ => return err(n, "FROM requires either one or three arguments"),
            };
            out.stages.push(Stage {
                name,
                base,
                platform: f.string("platform")?,
                commands: Vec::new(),
                original: n.original.trim().to_string(),
                line: n.start_line,
            });
            continue;
        }
        let c = command(n)?;
        match out.stages.last_mut() {
            Some(s) => s.commands.push(c),
            None => {
                if !matches!(c.kind, Kind::Arg(_)) {
                    return err(n, "no build stage in current context");
                }
                out.meta_args.push(c);
            }
        }
    }
    if out.stages.is_empty() {
        return Err(InstructionError {
            line: df.end_line,
            message: "no build stage in current context".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    #[test]
    fn stages_and_flags() {
        let df = parse("ARG V=1\nFROM busybox:$V AS Build\nCOPY --chown=1:2 a b /d/\nFROM scratch\nCOPY --from=build /d /\n").unwrap();
        let s = parse_stages(&df).unwrap();
        assert_eq!(s.meta_args.len(), 1);
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.find("BUILD"), Some(0));
        let Kind::Copy(c) = &s.stages[0].commands[0].kind else {
            panic!()
        };
        assert_eq!(c.srcs, vec!["a", "b"]);
        assert_eq!(c.chown.as_deref(), Some("1:2"));
    }

    #[test]
    fn errors() {
        let e = parse_stages(&parse("FROM a\nFOO bar\n").unwrap()).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unknown instruction: FOO")
        );
        let e = parse_stages(&parse("FROM a\nCOPY --bogus a b\n").unwrap()).unwrap_err();
        assert_eq!(e.message, "Unknown flag: bogus");
        let e = parse_stages(&parse("RUN x\n").unwrap()).unwrap_err();
        assert_eq!(e.message, "no build stage in current context");
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
    }
}
