//! Image references, normalised the way Docker's `distribution/reference` does:
//! `busybox` is `docker.io/library/busybox:latest`.

use crate::error::ImageError;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with optional port: `docker.io`, `localhost:5000`.
    pub domain: String,
    /// Repository path inside the registry: `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`
    pub digest: Option<String>,
}

fn invalid() -> ImageError {
    ImageError::InvalidReference("invalid reference format".into())
}

impl Reference {
    /// Parses and normalises; adds the `latest` tag when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let mut r = Self::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(r)
    }

    /// Parses and normalises without adding a default tag (Docker's `ParseNormalizedNamed`).
    pub fn parse_named(s: &str) -> Result<Reference, ImageError> {
        if s.len() == 64 && is_lower_hex(s) {
            return Err(ImageError::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (domain, remainder) = split_docker_domain(s);
        // The lowercase check is done on the remote name before full validation, as Docker does,
        // so the user gets the more helpful message.
        let remote_name = match remainder.find(':') {
            Some(i) => &remainder[..i],
            None => remainder.as_str(),
        };
        if remote_name.to_lowercase() != remote_name {
            return Err(ImageError::InvalidReference(format!(
                "invalid reference format: repository name ({remote_name}) must be lowercase"
            )));
        }

        let (name_part, digest) = match remainder.split_once('@') {
            Some((n, d)) => {
                validate_digest(d)?;
                (n, Some(d.to_string()))
            }
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_part.rfind(':') {
            Some(i) if !name_part[i..].contains('/') => {
                let t = &name_part[i + 1..];
                validate_tag(t)?;
                (&name_part[..i], Some(t.to_string()))
            }
            _ => (name_part, None),
        };
        validate_domain(&domain)?;
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(invalid());
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ImageError::InvalidReference(format!(
                "invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        Ok(Reference {
            domain,
            path: path.to_string(),
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Docker's short repository form: `busybox`, `user/app`, `localhost:5000/x`.
    pub fn repository_familiar(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// `busybox:latest`
    pub fn familiar(&self) -> String {
        format!("{}{}", self.repository_familiar(), self.suffix())
    }

    /// `docker.io/library/busybox:latest`
    pub fn full(&self) -> String {
        format!("{}{}", self.name(), self.suffix())
    }

    /// The same repository with only a tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same repository with only a digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.familiar())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first {
                (first.to_string(), name[i + 1..].to_string())
            } else {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            }
        }
        None => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// One path component of a repository name, `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`; the
/// registry server checks names by the same grammar.
pub fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

fn validate_domain(d: &str) -> Result<(), ImageError> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        let end = rest.find(']').ok_or_else(invalid)?;
        let addr = &rest[..end];
        if addr.is_empty() || !addr.bytes().all(|x| x.is_ascii_hexdigit() || x == b':') {
            return Err(invalid());
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(invalid()),
        };
        (None, port)
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        if !h.split('.').all(valid_domain_component) {
            return Err(invalid());
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|x| x.is_ascii_digit()) {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(t: &str) -> Result<(), ImageError> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
    {
        return Err(invalid());
    }
    Ok(())
}

pub(crate) fn validate_digest(d: &str) -> Result<(), ImageError> {
    let (alg, hex) = d.split_once(':').ok_or_else(invalid)?;
    let alg_ok = !alg.is_empty()
        && alg.as_bytes()[0].is_ascii_alphabetic()
        && alg
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"-_+.".contains(&x));
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|x| x.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    if alg == "sha256" && (hex.len() != 64 || !is_lower_hex(hex)) {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        let r = p("busybox");
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.repository_familiar(), "busybox");
        assert_eq!(p("user/app").full(), "docker.io/user/app:latest");
        assert_eq!(p("user/app").familiar(), "user/app:latest");
        let l = p("localhost:5000/x:1");
        assert_eq!(l.domain, "localhost:5000");
        assert_eq!(l.familiar(), "localhost:5000/x:1");
        assert_eq!(p("localhost/x").domain, "localhost");
        assert_eq!(
            p("index.docker.io/library/busybox:1.36").familiar(),
            "busybox:1.36"
        );
        assert_eq!(p("docker.io/library/a/b").familiar(), "library/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("reg.io:443/a/b@{d}"));
        assert_eq!(r.domain, "reg.io:443");
        assert_eq!(r.path, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = p(&format!("busybox:1@{d}"));
        assert_eq!(r.familiar(), format!("busybox:1@{d}"));
        assert_eq!(p("[::1]:5000/x").domain, "[::1]:5000");
        assert_eq!(p("a__b/c-d--e.f_g").path, "a__b/c-d--e.f_g");
    }

    #[test]
    fn rejects_invalid() {
        let e = Reference::parse("Busybox").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        for bad in [
            "",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/b/",
            "-a",
            "a..b",
            "a___b",
            "busybox@sha256:abc",
            "busybox:latest:x",
            "bad host/x",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(matches!(e, ImageError::InvalidReference(_)), "{bad}");
        }
        assert!(Reference::parse(&"a".repeat(64)).is_err());
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
        // An uppercase first component is a domain, as in Docker.
        assert_eq!(p("Reg/x").domain, "Reg");
    }
}
