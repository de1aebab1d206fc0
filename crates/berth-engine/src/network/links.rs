//! Legacy links (`--link name:alias` on the default bridge): checks at create, resolution at start,
//! the environment Docker gives, and their removal.

use std::net::Ipv4Addr;

use berth_net::ports;

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::Engine;

/// A legacy link (`--link name:alias` on the default bridge) as a start resolves it.
pub(crate) struct LegacyLink {
    pub alias: String,
    pub name: String,
    pub hostname: String,
    pub ip: Option<Ipv4Addr>,
    pub env: Vec<String>,
    /// (port, proto), sorted.
    pub ports: Vec<(u16, String)>,
}

impl Engine {
    /// `DELETE /containers/{parent}/{alias}?link=1`: forgets the parent's link `alias`.
    pub async fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        let full = format!("{parent}/{alias}");
        let c = self
            .lookup(parent)
            .map_err(|_| EngineError::NotFound(format!("No such container: {full}")))?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        let links = rec.host_config.links.clone().unwrap_or_default();
        let keep: Vec<String> = links
            .iter()
            .filter(|l| parse_link(l).map(|(_, a)| a != alias).unwrap_or(true))
            .cloned()
            .collect();
        if keep.len() == links.len() {
            return Err(EngineError::NotFound(format!("No such container: {full}")));
        }
        c.update(|r| r.host_config.links = Some(keep))?;
        Ok(())
    }

    /// At create: every legacy link names an existing container that has a network namespace
    /// of its own.
    pub(crate) fn check_legacy_links(&self, hc: &berth_api::types::HostConfig) -> Result<()> {
        for l in hc.links.clone().unwrap_or_default() {
            let (name, _) = parse_link(&l)?;
            let child = self.lookup(&name).map_err(|_| {
                EngineError::InvalidParameter(format!("Could not get container for {name}"))
            })?;
            if child.snapshot().host_config.network_mode.is_host() {
                return Err(EngineError::InvalidParameter(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
                ));
            }
        }
        Ok(())
    }

    /// At start, on the default bridge: the linked containers, which must be running.
    /// (`DELETE /containers/{parent}/{alias}?link=1` removes one: see [`Engine::remove_link`].)
    pub(crate) fn legacy_links(&self, rec: &ContainerRecord) -> Result<Vec<LegacyLink>> {
        if rec.host_config.network_mode.network() != Some("bridge") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for l in rec.host_config.links.clone().unwrap_or_default() {
            let (name, alias) = parse_link(&l)?;
            let child = self.lookup(&name).map_err(|_| {
                EngineError::InvalidParameter(format!("Could not get container for {name}"))
            })?;
            let c = child.snapshot();
            if !c.state.status.is_running() {
                return Err(EngineError::Internal(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    c.name, rec.name
                )));
            }
            let ip = {
                let st = self.nets().lock();
                let bridge = st
                    .nets
                    .values()
                    .find(|n| n.default_bridge)
                    .map(|n| n.id.clone());
                st.containers
                    .get(&c.id)
                    .and_then(|cn| cn.sandbox.as_ref())
                    .and_then(|sb| bridge.and_then(|b| sb.endpoints.get(&b)))
                    .map(|ep| ep.ip)
            };
            let mut ports: Vec<(u16, String)> = c
                .config
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .keys()
                .filter_map(|k| ports::parse_port_key(k).ok())
                .collect();
            ports.sort();
            out.push(LegacyLink {
                alias,
                name: c.name.clone(),
                hostname: c.config.hostname.clone(),
                ip,
                env: c.config.env.clone().unwrap_or_default(),
                ports,
            });
        }
        Ok(out)
    }
}

/// The environment Docker gives a container for its legacy links (`DB_NAME`, `DB_PORT_5432_TCP`,
/// `DB_ENV_*`...).
pub(crate) fn link_env(parent: &str, links: &[LegacyLink]) -> Vec<String> {
    let mut env = Vec::new();
    for l in links {
        let a = l.alias.to_ascii_uppercase().replace('-', "_");
        let ip = l.ip.map(|i| i.to_string()).unwrap_or_default();
        if let Some((p, proto)) = l.ports.first() {
            env.push(format!("{a}_PORT={proto}://{ip}:{p}"));
        }
        for (p, proto) in &l.ports {
            let up = proto.to_ascii_uppercase();
            env.push(format!("{a}_PORT_{p}_{up}={proto}://{ip}:{p}"));
            env.push(format!("{a}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{a}_PORT_{p}_{up}_PORT={p}"));
            env.push(format!("{a}_PORT_{p}_{up}_PROTO={proto}"));
        }
        env.push(format!("{a}_NAME=/{parent}/{}", l.alias));
        for kv in &l.env {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            if k == "HOME" || k == "PATH" {
                continue;
            }
            env.push(format!("{a}_ENV_{k}={v}"));
        }
    }
    env
}

/// `name:alias` (or `name`) of a link, Docker's `ParseLink`.
pub(crate) fn parse_link(s: &str) -> Result<(String, String)> {
    let bad = || EngineError::InvalidParameter(format!("invalid link format: {s}"));
    let (name, alias) = match s.split_once(':') {
        Some((n, a)) => (n, a),
        None => (s, s),
    };
    let name = name.trim_start_matches('/');
    // Docker's own form: `/child:/parent/alias`.
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty() || alias.is_empty() || alias.contains(':') {
        return Err(bad());
    }
    Ok((name.to_string(), alias.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_and_give_dockers_env() {
        assert_eq!(
            parse_link("db:alias").unwrap(),
            ("db".to_string(), "alias".to_string())
        );
        assert_eq!(
            parse_link("/db:/web/alias").unwrap(),
            ("db".to_string(), "alias".to_string())
        );
        assert_eq!(
            parse_link("db").unwrap(),
            ("db".to_string(), "db".to_string())
        );
        assert!(parse_link(":x").is_err());
        assert!(parse_link("a:").is_err());
        let env = link_env(
            "web",
            &[LegacyLink {
                alias: "my-db".into(),
                name: "db".into(),
                hostname: "h".into(),
                ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                env: vec!["FOO=1".into(), "PATH=/bin".into(), "BAR=a=b".into()],
                ports: vec![(5432, "tcp".into()), (9000, "udp".into())],
            }],
        );
        for want in [
            "MY_DB_PORT=tcp://10.0.0.5:5432",
            "MY_DB_PORT_5432_TCP=tcp://10.0.0.5:5432",
            "MY_DB_PORT_5432_TCP_ADDR=10.0.0.5",
            "MY_DB_PORT_5432_TCP_PORT=5432",
            "MY_DB_PORT_9000_UDP_PROTO=udp",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_FOO=1",
            "MY_DB_ENV_BAR=a=b",
        ] {
            assert!(env.iter().any(|e| e == want), "{want}: {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH")));
    }
}
