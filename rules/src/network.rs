//! Source networks in CIDR form (`10.0.0.0/8`, `::1/128`), parsed with `std::net` alone.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr/prefix`, or a bare address (a single host). The error says what to
    /// write, for a load error.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr_text, prefix_text) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| "is not an IP address; write e.g. \"10.0.0.0/8\" or \"::1/128\"")?;
        let max = max_prefix(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("has a bad prefix length; write /0 to /{max}"))?,
        };
        let network = Network { addr, prefix };
        let base = network.base();
        if base != addr {
            return Err(format!("has host bits set; write \"{base}/{prefix}\""));
        }
        Ok(network)
    }

    /// Whether `ip` is inside. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, what a
    /// dual-stack listener reports) count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }

    fn base(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let bits = masked(u128::from(u32::from(a)), self.prefix, 32);
                IpAddr::from(u32::try_from(bits).unwrap_or(0).to_be_bytes())
            }
            IpAddr::V6(a) => IpAddr::from(masked(u128::from(a), self.prefix, 128).to_be_bytes()),
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `bits` (an address of `width` bits) with all but the first `prefix` bits cleared.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
    let width_mask = u128::MAX.checked_shr(128 - u32::from(width)).unwrap_or(0);
    bits & mask & width_mask
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        Network::parse(text).expect("valid network")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn ipv4_networks_contain_their_addresses() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("10.0.0.0")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(net("192.168.1.0/24").contains(ip("192.168.1.77")));
        assert!(!net("192.168.1.0/24").contains(ip("192.168.2.1")));
    }

    #[test]
    fn zero_prefix_contains_everything_of_its_family() {
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_networks_contain_their_addresses() {
        assert!(net("::1/128").contains(ip("::1")));
        assert!(!net("::1/128").contains(ip("::2")));
        let n = net("2001:db8::/32");
        assert!(n.contains(ip("2001:db8:ffff::1")));
        assert!(!n.contains(ip("2001:db9::1")));
    }

    #[test]
    fn bare_address_is_a_single_host() {
        assert_eq!(net("127.0.0.1").to_string(), "127.0.0.1/32");
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_networks() {
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn bad_networks_say_what_to_write() {
        assert!(Network::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("\"10.0.0.0/8\""));
        assert!(Network::parse("10.0.0.0/33")
            .unwrap_err()
            .contains("/0 to /32"));
        assert!(Network::parse("::/129").unwrap_err().contains("/0 to /128"));
        assert!(Network::parse("localhost")
            .unwrap_err()
            .contains("not an IP address"));
        assert!(Network::parse("10.0.0.0/x").is_err());
    }
}
