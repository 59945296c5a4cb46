//! Tracked endpoints given on the command line: `--backend CIDR:PORT` and `--frontend-port`.

use std::{fmt, net::IpAddr, str::FromStr};

use tracker_common::EndpointKey;

/// A backend pool: every server in `addr/prefix` listening on `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: IpAddr,
    pub prefix: u8,
    pub port: u16,
}

impl Backend {
    /// Key data and prefix length for the kernel's `ENDPOINTS` LPM trie: port (16 bits),
    /// then the address as IPv6 (IPv4 mapped, so its prefix counts 96 more bits).
    pub fn lpm_key(&self) -> (u32, EndpointKey) {
        let (addr, bits) = match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6.octets(), u32::from(self.prefix)),
        };
        (
            16 + bits,
            EndpointKey {
                port: self.port.to_be_bytes(),
                addr,
            },
        )
    }
}

impl Backend {
    /// Whether `addr` is a server of this pool (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: std::net::SocketAddr) -> bool {
        if addr.port() != self.port {
            return false;
        }
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}:{}", self.prefix, self.port),
            IpAddr::V6(a) => write!(f, "[{a}/{}]:{}", self.prefix, self.port),
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    /// `198.18.1.0/24:80`, `198.18.1.10:80` (a /32), `[2001:db8::/64]:80`, `[2001:db8::1]:80`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "invalid backend `{s}`: {why} (expected CIDR:PORT, e.g. 198.18.1.0/24:80 or [2001:db8::/64]:80)"
            )
        };
        let (net, port) = if let Some(rest) = s.strip_prefix('[') {
            let (net, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("missing `]:PORT`"))?;
            (net, port)
        } else {
            s.rsplit_once(':').ok_or_else(|| bad("missing `:PORT`"))?
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number 1-65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        let (addr, prefix) = match net.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (net, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad("prefix is not a number"))?,
            None => max,
        };
        if prefix > max {
            return Err(bad(&format!("prefix /{prefix} longer than /{max}")));
        }
        Ok(Self { addr, prefix, port })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_v4_v6_and_hosts() {
        let b: Backend = "198.18.1.0/24:80".parse().unwrap();
        assert_eq!(b.prefix, 24);
        assert_eq!(b.port, 80);
        let (bits, key) = b.lpm_key();
        assert_eq!(bits, 16 + 96 + 24);
        assert_eq!(key.port, [0, 80]);
        assert_eq!(&key.addr[10..], &[0xff, 0xff, 198, 18, 1, 0]);
        let h: Backend = "198.18.1.10:8080".parse().unwrap();
        assert_eq!(h.prefix, 32);
        let v6: Backend = "[2001:db8::/64]:80".parse().unwrap();
        assert_eq!(v6.lpm_key().0, 16 + 64);
        assert_eq!(v6.to_string(), "[2001:db8::/64]:80");
        assert!(b.contains("198.18.1.77:80".parse().unwrap()));
        assert!(!b.contains("198.18.2.77:80".parse().unwrap()));
        assert!(!b.contains("198.18.1.77:81".parse().unwrap()));
        assert!(v6.contains("[2001:db8::5]:80".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_input_with_the_reason() {
        for (s, why) in [
            ("198.18.1.0/24", "missing `:PORT`"),
            ("198.18.1.0/33:80", "longer than /32"),
            ("198.18.1.0/24:0", "port 0"),
            ("198.18.1.0/24:99999", "port is not a number"),
            ("web1:80", "not an IP address"),
            ("[2001:db8::/64:80", "missing `]:PORT`"),
        ] {
            let err = s.parse::<Backend>().unwrap_err();
            assert!(err.contains(why), "{s}: {err}");
        }
    }
}
