//! The image config blob (Docker/OCI), with serde names exactly as on disk. Unknown fields are kept
//! in `extra` so nothing is lost when a config is read and written back; the image id is always the
//! digest of the original bytes, never of a re-serialisation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A Go `map[string]struct{}`: serialises as `{"80/tcp": {}}`.
pub type EmptyObjectMap = BTreeMap<String, EmptyObject>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmptyObject {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// The `config` section, PascalCase as Docker writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_stdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_stdout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_stderr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<EmptyObjectMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_stdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<EmptyObjectMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// Durations are Go `time.Duration` nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// Docker's `GOARCH` name for the host.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A platform specifier as Docker reads one (`os`, `arch`, `os/arch[/variant]`): names are
/// normalised (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`, …) and a single
/// component must be a known OS or architecture. Returns (os, architecture, variant).
pub fn parse_platform(spec: &str) -> Result<(String, String, Option<String>), String> {
    const OSES: &[&str] = &[
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
    ];
    const ARCHES: &[&str] = &[
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ];
    let bad = || format!("\"{spec}\": unknown operating system or architecture: invalid argument");
    let lower = spec.to_ascii_lowercase();
    let arch = |a: &str, v: Option<&str>| -> (String, Option<String>) {
        let (a, v) = match (a, v) {
            ("i386", v) => ("386", v),
            ("x86_64" | "x86-64", v) => ("amd64", v),
            ("aarch64", v) => ("arm64", v),
            ("armhf", _) => ("arm", Some("v7")),
            ("armel", _) => ("arm", Some("v6")),
            (a, v) => (a, v),
        };
        (
            a.to_string(),
            v.filter(|v| !v.is_empty()).map(str::to_string),
        )
    };
    let os = |o: &str| {
        if o == "macos" {
            "darwin".to_string()
        } else {
            o.to_string()
        }
    };
    let parts: Vec<&str> = lower.split('/').collect();
    match parts.as_slice() {
        [one] => {
            if OSES.contains(&os(one).as_str()) {
                return Ok((os(one), host_architecture().to_string(), None));
            }
            let (a, v) = arch(one, None);
            if ARCHES.contains(&a.as_str()) {
                return Ok(("linux".to_string(), a, v));
            }
            Err(bad())
        }
        [o, a] if !o.is_empty() && !a.is_empty() => {
            let (a, v) = arch(a, None);
            Ok((os(o), a, v))
        }
        [o, a, v] if !o.is_empty() && !a.is_empty() => {
            let (a, v) = arch(a, Some(v));
            Ok((os(o), a, v))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_as_docker_reads_them() {
        let p = |s: &str| parse_platform(s);
        let host = host_architecture().to_string();
        assert_eq!(p("linux").unwrap(), ("linux".into(), host, None));
        assert_eq!(p("arm64").unwrap(), ("linux".into(), "arm64".into(), None));
        assert_eq!(
            p("linux/x86_64").unwrap(),
            ("linux".into(), "amd64".into(), None)
        );
        assert_eq!(
            p("Linux/ARM/v7").unwrap(),
            ("linux".into(), "arm".into(), Some("v7".into()))
        );
        assert_eq!(
            p("linux/armhf").unwrap(),
            ("linux".into(), "arm".into(), Some("v7".into()))
        );
        assert_eq!(
            p("foobar").unwrap_err(),
            "\"foobar\": unknown operating system or architecture: invalid argument"
        );
        assert!(p("linux/").is_err());
        assert!(p("a/b/c/d").is_err());
    }

    #[test]
    fn keeps_unknown_fields() {
        let src = r#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["A=b"],"ExposedPorts":{"80/tcp":{}},"Weird":1},"container_config":{"Cmd":["x"]},"created":"2024-01-01T00:00:00Z","history":[{"created":"2024-01-01T00:00:00Z","created_by":"x","empty_layer":true,"z":2}],"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c: ImageConfig = serde_json::from_str(src).unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert!(c.extra.contains_key("container_config"));
        let back: serde_json::Value = serde_json::to_value(&c).unwrap();
        let orig: serde_json::Value = serde_json::from_str(src).unwrap();
        assert_eq!(back, orig);
    }
}
