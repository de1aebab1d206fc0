//! `docker import`: a rootfs tarball becomes a one-layer image; `--change` lines are applied the
//! way the Dockerfile builder would.

use crate::config::{ContainerConfig, EmptyObject, History, ImageConfig, RootFs};
use crate::error::ImageError;
use crate::reference::Reference;
use crate::store::ImageStore;
use std::io::Read;

const ALLOWED: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidArgument(msg.into())
}

/// Splits shell words the way Dockerfile ENV/LABEL do: quotes group, backslash escapes.
fn shell_words(s: &str) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(bad(
                            "unexpected end of statement while looking for matching single-quote",
                        )),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(bad("unexpected end of statement while looking for matching double-quote")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(bad("unexpected end of statement while looking for matching double-quote")),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=VALUE ...` pairs, or the legacy `KEY VALUE` form.
fn key_values(instr: &str, rest: &str) -> Result<Vec<(String, String)>, ImageError> {
    let words = shell_words(rest)?;
    let Some(first) = words.first() else {
        return Err(bad(format!("{instr} requires at least one argument")));
    };
    if !first.contains('=') {
        // Legacy form: the rest of the line, after the key, is the value.
        let key = first.clone();
        let after = rest.trim_start()[rest
            .trim_start()
            .find(char::is_whitespace)
            .unwrap_or(rest.trim_start().len())..]
            .trim();
        if after.is_empty() {
            return Err(bad(format!("{instr} must have two arguments")));
        }
        let value = shell_words(after)?.join(" ");
        return Ok(vec![(key, value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(format!("{instr} names can not be blank"))),
        })
        .collect()
}

/// JSON array form if it parses as one, else None.
fn json_array(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if t.starts_with('[') {
        serde_json::from_str::<Vec<String>>(t).ok()
    } else {
        None
    }
}

fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Applies `docker import -c` / `docker commit -c` lines to a container config.
pub fn apply_changes(cfg: &mut ContainerConfig, changes: &[String]) -> Result<(), ImageError> {
    let mut cmd_set = false;
    for line in changes {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], line[i..].trim()),
            None => (line, ""),
        };
        let instr = instr.to_uppercase();
        if !ALLOWED.contains(&instr.as_str()) {
            return Err(bad(format!("{instr} is not a valid change command")));
        }
        let shell_form = |rest: &str, cfg: &ContainerConfig| -> Vec<String> {
            let mut v = cfg
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            v.push(rest.to_string());
            v
        };
        match instr.as_str() {
            "CMD" => {
                let v = json_array(rest).unwrap_or_else(|| shell_form(rest, cfg));
                cfg.cmd = Some(v);
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                let v = match json_array(rest) {
                    Some(v) => v,
                    None if rest.is_empty() => Vec::new(),
                    None => shell_form(rest, cfg),
                };
                cfg.entrypoint = Some(v);
                // As in a Dockerfile: a new ENTRYPOINT drops an inherited CMD.
                if !cmd_set {
                    cfg.cmd = None;
                }
            }
            "ENV" => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values("ENV", rest)? {
                    let entry = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str()))
                    {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(Default::default);
                for (k, v) in key_values("LABEL", rest)? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(Default::default);
                for w in shell_words(rest)? {
                    let (range, proto) = match w.split_once('/') {
                        Some((p, proto)) => (p.to_string(), proto.to_lowercase()),
                        None => (w.clone(), "tcp".to_string()),
                    };
                    let (lo, hi) = match range.split_once('-') {
                        Some((a, b)) => (a.to_string(), b.to_string()),
                        None => (range.clone(), range.clone()),
                    };
                    let parse = |s: &str| {
                        s.parse::<u16>()
                            .map_err(|_| bad(format!("invalid containerPort: {s}")))
                    };
                    let (lo, hi) = (parse(&lo)?, parse(&hi)?);
                    if hi < lo || !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
                        return Err(bad(format!("invalid port specification: {w}")));
                    }
                    for p in lo..=hi {
                        ports.insert(format!("{p}/{proto}"), EmptyObject {});
                    }
                }
            }
            "VOLUME" => {
                let vols = json_array(rest)
                    .map(Ok)
                    .unwrap_or_else(|| shell_words(rest))?;
                if vols.is_empty() {
                    return Err(bad("VOLUME specified can not be an empty string"));
                }
                let map = cfg.volumes.get_or_insert_with(Default::default);
                for v in vols {
                    if v.trim().is_empty() {
                        return Err(bad("VOLUME specified can not be an empty string"));
                    }
                    map.insert(v, EmptyObject {});
                }
            }
            "WORKDIR" => {
                if rest.is_empty() {
                    return Err(bad("WORKDIR requires exactly one argument"));
                }
                let base = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
                let joined = if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("{base}/{rest}")
                };
                cfg.working_dir = Some(clean_abs(&joined));
            }
            "USER" => {
                if rest.is_empty() {
                    return Err(bad("USER requires exactly one argument"));
                }
                cfg.user = Some(rest.to_string());
            }
            "STOPSIGNAL" => {
                if rest.is_empty() {
                    return Err(bad("STOPSIGNAL requires exactly one argument"));
                }
                cfg.stop_signal = Some(rest.to_string());
            }
            "ONBUILD" => {
                let inner = rest.split_whitespace().next().unwrap_or("").to_uppercase();
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER" | "") {
                    return Err(bad(format!("{inner} isn't allowed as an ONBUILD trigger")));
                }
                cfg.on_build
                    .get_or_insert_with(Vec::new)
                    .push(rest.to_string());
            }
            _ => return Err(bad(format!("{instr} is not a valid change command"))),
        }
    }
    Ok(())
}

impl ImageStore {
    /// `docker import`: returns the new image id.
    pub fn import(
        &self,
        tar: &mut dyn Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<String, ImageError> {
        // Validate everything cheap before reading the tarball.
        let tag = reference.map(Reference::parse).transpose()?;
        if tag.as_ref().is_some_and(|t| t.digest.is_some()) {
            return Err(bad("refusing to create a tag with a digest reference"));
        }
        let mut cc = ContainerConfig::default();
        apply_changes(&mut cc, changes)?;

        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let layer = self.add_layer_locked(None, None, tar)?;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let msg = match message {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => "Imported from -".to_string(),
        };
        let config = ImageConfig {
            architecture: crate::config::host_architecture().into(),
            os: "linux".into(),
            created: Some(created.clone()),
            comment: Some(msg.clone()),
            docker_version: Some(concat!("berth-", env!("CARGO_PKG_VERSION")).into()),
            config: Some(cc),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
                extra: Default::default(),
            },
            history: vec![History {
                created: Some(created),
                comment: Some(msg),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&config).map_err(|e| ImageError::json("image config", e))?;
        let rec = self.prepare_record(&bytes)?;
        let id = rec.id.clone();
        self.commit(vec![(rec, tag.into_iter().collect())])?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<ContainerConfig, ImageError> {
        let mut c = ContainerConfig::default();
        let v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &v)?;
        Ok(c)
    }

    #[test]
    fn changes_values() {
        let c = apply(&[
            "CMD echo hi",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY value with spaces",
            "ENV A=3",
            "LABEL com.x=\"y z\" k=v",
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME [\"/data\"]",
            "WORKDIR /app",
            "WORKDIR sub/../src",
            "USER nobody:nogroup",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        assert_eq!(
            c.cmd.unwrap(),
            vec!["/bin/sh".to_string(), "-c".into(), "echo hi".into()]
        );
        assert_eq!(
            c.env.unwrap(),
            vec![
                "A=3".to_string(),
                "B=two words".into(),
                "LEGACY=value with spaces".into()
            ]
        );
        let l = c.labels.unwrap();
        assert_eq!(l["com.x"], "y z");
        assert_eq!(l["k"], "v");
        let p: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(p, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.working_dir.as_deref(), Some("/app/src"));
        assert_eq!(c.user.as_deref(), Some("nobody:nogroup"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        let c = apply(&[r#"ENTRYPOINT ["/bin/app", "--x"]"#, "CMD [\"a\"]"]).unwrap();
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/app", "--x"]);
        assert_eq!(c.cmd.unwrap(), vec!["a"]);
        let e = apply(&["RUN echo"]).unwrap_err();
        assert_eq!(e.to_string(), "RUN is not a valid change command");
        assert!(apply(&["EXPOSE 99999"]).is_err());
        assert!(apply(&["ENV A=\"unterminated"]).is_err());
    }
}
