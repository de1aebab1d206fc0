//! `/networks` types and client calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Body, Client, Result};
use crate::types::{nullable, EndpointSettings};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subnet: String,
    #[serde(
        rename = "IPRange",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub ip_range: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub gateway: String,
    /// Addresses the IPAM driver must not hand out (`--aux-address name=ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub config: Option<Vec<IpamConfig>>,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkCreateRequest {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub internal: bool,
    #[serde(deserialize_with = "nullable")]
    pub attachable: bool,
    #[serde(rename = "EnableIPv6", skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM", skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Pre-1.44 clients send it; duplicates are always refused now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_duplicate: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkCreateResponse {
    #[serde(rename = "Id")]
    pub id: String,
    pub warning: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConfigReference {
    pub network: String,
}

/// `GET /networks/{id}` and the entries of `GET /networks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkInspect {
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigReference,
    pub config_only: bool,
    pub containers: BTreeMap<String, NetworkContainer>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkConnectRequest {
    #[serde(deserialize_with = "nullable")]
    pub container: String,
    pub endpoint_config: Option<EndpointSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkDisconnectRequest {
    #[serde(deserialize_with = "nullable")]
    pub container: String,
    #[serde(deserialize_with = "nullable")]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkPruneResponse {
    pub networks_deleted: Option<Vec<String>>,
}

fn seg(s: &str) -> String {
    crate::endpoints::seg(s)
}

impl Client {
    pub async fn network_list(&self, filters: &str) -> Result<Vec<NetworkInspect>> {
        let q = if filters.is_empty() {
            vec![]
        } else {
            vec![("filters", filters.to_string())]
        };
        self.get_json("/networks", &q).await
    }

    pub async fn network_inspect_raw(&self, id: &str) -> Result<serde_json::Value> {
        self.get_json(&format!("/networks/{}", seg(id)), &[]).await
    }

    pub async fn network_create(
        &self,
        req: &NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.post_json("/networks/create", &[], Body::Json(body))
            .await
    }

    pub async fn network_remove(&self, id: &str) -> Result<()> {
        self.delete(&format!("/networks/{}", seg(id)), &[])
            .await?
            .bytes()
            .await
            .map(|_| ())
    }

    pub async fn network_connect(&self, id: &str, req: &NetworkConnectRequest) -> Result<()> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.post(
            &format!("/networks/{}/connect", seg(id)),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn network_disconnect(&self, id: &str, req: &NetworkDisconnectRequest) -> Result<()> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        self.post(
            &format!("/networks/{}/disconnect", seg(id)),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn network_prune(&self, filters: &str) -> Result<NetworkPruneResponse> {
        let q = if filters.is_empty() {
            vec![]
        } else {
            vec![("filters", filters.to_string())]
        };
        self.post_json("/networks/prune", &q, Body::Empty).await
    }
}

/// `HostConfig.NetworkMode`, parsed once when the body is read; the wire keeps Docker's strings.
/// An empty mode is `Default` (the daemon's default network, shown as `default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum NetworkMode {
    #[default]
    Default,
    Bridge,
    Host,
    None,
    /// `container:<name|id>`: that container's network namespace (the target may be empty
    /// here; create refuses it with Docker's words).
    Container(String),
    /// A user-defined network, by name or id.
    Network(String),
}

impl NetworkMode {
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" | "default" => NetworkMode::Default,
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            m => match m.strip_prefix("container:") {
                Some(t) => NetworkMode::Container(t.to_string()),
                None => NetworkMode::Network(m.to_string()),
            },
        }
    }

    /// The network this mode attaches the container to: `bridge` for the default, none for
    /// host, none and `container:`.
    pub fn network(&self) -> Option<&str> {
        match self {
            NetworkMode::Default | NetworkMode::Bridge => Some("bridge"),
            NetworkMode::Network(n) => Some(n),
            NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_) => None,
        }
    }

    pub fn is_host(&self) -> bool {
        *self == NetworkMode::Host
    }

    /// The container whose namespace this mode joins.
    pub fn container(&self) -> Option<&str> {
        match self {
            NetworkMode::Container(t) => Some(t),
            _ => None,
        }
    }

    /// Host, none or `container:`: no network of the container's own to connect to.
    pub fn shares_namespace(&self) -> bool {
        self.network().is_none()
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Default => f.write_str("default"),
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(t) => write!(f, "container:{t}"),
            NetworkMode::Network(n) => f.write_str(n),
        }
    }
}

impl From<&str> for NetworkMode {
    fn from(s: &str) -> Self {
        NetworkMode::parse(s)
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(NetworkMode::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod mode_tests {
    use super::NetworkMode;

    #[test]
    fn network_modes() {
        for (s, network, shown) in [
            ("", Some("bridge"), "default"),
            ("default", Some("bridge"), "default"),
            ("bridge", Some("bridge"), "bridge"),
            ("host", None, "host"),
            ("none", None, "none"),
            ("container:x", None, "container:x"),
            ("mynet", Some("mynet"), "mynet"),
        ] {
            let m = NetworkMode::parse(s);
            assert_eq!(m.network(), network, "{s}");
            assert_eq!(m.to_string(), shown);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<NetworkMode>(&json).unwrap(), m);
        }
        assert_eq!(NetworkMode::parse("container:x").container(), Some("x"));
        assert_eq!(
            NetworkMode::parse("container:"),
            NetworkMode::Container(String::new())
        );
    }
}
