//! berth-net: bridges, veth pairs and network namespaces (netlink), address management, NAT and
//! published ports (nftables), the embedded DNS resolver of user-defined networks, and the CNI
//! plugin driver of pod networks.
//!
//! The engine decides *what* (which networks exist, which container is on which); this crate
//! does the kernel side and knows nothing of containers beyond an owner id.

pub mod cidr;
pub mod cni;
pub mod dns;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod ports;
pub mod setup;

pub use cidr::{Cidr, Cidr6};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Conflict(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{ctx}: {}", std::io::Error::from_raw_os_error(*errno))]
    Os { ctx: String, errno: i32 },
    #[error("netns: {0}")]
    Netns(String),
    #[error("ipam: {0}")]
    Ipam(String),
    #[error("{0}")]
    Nft(String),
    #[error("dns: {0}")]
    Dns(String),
    #[error("cni: {0}")]
    Cni(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, NetError>;
