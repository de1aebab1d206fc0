//! IPv4 and IPv6 subnets.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What IPAM checks need of either family's prefix.
pub trait Subnet: Copy + fmt::Display + FromStr<Err = String> {
    type Addr: Copy + Ord + fmt::Display + FromStr + Serialize + serde::de::DeserializeOwned;
    /// The longest prefix a network may have (room for a gateway and an endpoint).
    const MAX_PREFIX: u8;
    /// "IPv4" or "IPv6", for messages.
    const FAMILY: &'static str;
    /// An address as a number (and back), for walking a prefix.
    fn bits(ip: Self::Addr) -> u128;
    fn from_bits(b: u128) -> Self::Addr;
    /// The prefix's last address (the IPv4 broadcast).
    fn last(&self) -> Self::Addr;
    fn addr(&self) -> Self::Addr;
    fn prefix(&self) -> u8;
    fn network(&self) -> Self::Addr;
    fn normalized(&self) -> Self;
    fn contains(&self, ip: Self::Addr) -> bool;
    fn first_host(&self) -> Self::Addr;
    /// An address neither a gateway nor an endpoint may take: the network's, and for IPv4 the
    /// broadcast (except on /31 and /32, which have neither).
    fn reserved(&self, ip: Self::Addr) -> bool;
}

impl Subnet for Cidr {
    type Addr = Ipv4Addr;
    const MAX_PREFIX: u8 = 30;
    const FAMILY: &'static str = "IPv4";
    fn bits(ip: Ipv4Addr) -> u128 {
        u128::from(u32::from(ip))
    }
    fn from_bits(b: u128) -> Ipv4Addr {
        Ipv4Addr::from(b as u32)
    }
    fn last(&self) -> Ipv4Addr {
        self.broadcast()
    }
    fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    fn prefix(&self) -> u8 {
        self.prefix
    }
    fn network(&self) -> Ipv4Addr {
        Cidr::network(self)
    }
    fn normalized(&self) -> Cidr {
        Cidr::normalized(self)
    }
    fn contains(&self, ip: Ipv4Addr) -> bool {
        Cidr::contains(self, ip)
    }
    fn first_host(&self) -> Ipv4Addr {
        Cidr::first_host(self)
    }
    fn reserved(&self, ip: Ipv4Addr) -> bool {
        self.prefix < 31 && (ip == Cidr::network(self) || ip == self.broadcast())
    }
}

impl Subnet for Cidr6 {
    type Addr = Ipv6Addr;
    const MAX_PREFIX: u8 = 126;
    const FAMILY: &'static str = "IPv6";
    fn bits(ip: Ipv6Addr) -> u128 {
        u128::from(ip)
    }
    fn from_bits(b: u128) -> Ipv6Addr {
        Ipv6Addr::from(b)
    }
    fn last(&self) -> Ipv6Addr {
        Cidr6::last(self)
    }
    fn addr(&self) -> Ipv6Addr {
        self.addr
    }
    fn prefix(&self) -> u8 {
        self.prefix
    }
    fn network(&self) -> Ipv6Addr {
        Cidr6::network(self)
    }
    fn normalized(&self) -> Cidr6 {
        Cidr6::normalized(self)
    }
    fn contains(&self, ip: Ipv6Addr) -> bool {
        Cidr6::contains(self, ip)
    }
    fn first_host(&self) -> Ipv6Addr {
        Cidr6::first_host(self)
    }
    fn reserved(&self, ip: Ipv6Addr) -> bool {
        ip == Cidr6::network(self)
    }
}

/// An IPv4 prefix; `addr` may carry host bits (`--bip 10.1.0.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then_some(Cidr { addr, prefix })
    }
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// This prefix without host bits.
    pub fn normalized(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }
    /// The first usable host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(1))
    }
    /// Splits this prefix into subnets of length `len` (none when `len` is shorter).
    pub fn subnets(&self, len: u8) -> impl Iterator<Item = Cidr> {
        let base = u32::from(self.network()) as u64;
        let count = if len < self.prefix || len > 32 {
            0
        } else {
            1u64 << (len - self.prefix)
        };
        let step = 1u64 << (32 - len as u32);
        (0..count).map(move |i| Cidr {
            addr: Ipv4Addr::from((base + i * step) as u32),
            prefix: len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv6 prefix; `addr` may carry host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Cidr6 {
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Option<Cidr6> {
        (prefix <= 128).then_some(Cidr6 { addr, prefix })
    }
    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix as u32)
        }
    }
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }
    pub fn normalized(&self) -> Cidr6 {
        Cidr6 {
            addr: self.network(),
            prefix: self.prefix,
        }
    }
    pub fn last(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | !self.mask())
    }
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.network())
    }
    pub fn overlaps(&self, other: &Cidr6) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
    /// The first address after the network's (the default gateway).
    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.network()).wrapping_add(1))
    }
}

impl fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr6 {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr6, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Cidr6::new(addr, prefix).ok_or_else(bad)
    }
}

impl Serialize for Cidr6 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr6 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr6, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_math() {
        let c: Cidr = "10.1.2.3/24".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert!(c.contains(Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 1, 3, 1)));
        assert_eq!(c.normalized().to_string(), "10.1.2.0/24");
        let big: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(big.overlaps(&c) && c.overlaps(&big));
        assert!(!c.overlaps(&"10.1.3.0/24".parse().unwrap()));
        let subs: Vec<_> = "10.9.0.0/22".parse::<Cidr>().unwrap().subnets(24).collect();
        assert_eq!(subs.len(), 4);
        assert_eq!(subs[3].to_string(), "10.9.3.0/24");
        assert!("10.1.2.3".parse::<Cidr>().is_err());
        assert!("10.1.2.3/33".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
        assert_eq!(Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap().size(), 1 << 32);
        let v6: Cidr6 = "2001:db8::5/64".parse().unwrap();
        assert_eq!(v6.normalized().to_string(), "2001:db8::/64");
        assert_eq!(v6.first_host().to_string(), "2001:db8::1");
        assert!(v6.contains("2001:db8::ffff:1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(v6.overlaps(&"2001:db8::/96".parse().unwrap()));
        assert!("10.0.0.0/8".parse::<Cidr6>().is_err());
        assert!("2001:db8::/129".parse::<Cidr6>().is_err());
    }
}
