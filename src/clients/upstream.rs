//! Where the server may send requests on a client's behalf. Link-local and cloud-metadata
//! addresses are never allowed (a stored token must not be steered at 169.254.169.254);
//! with `deny_private` — for multi-tenant hosting — private, loopback and similar ranges too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The server-wide policy for upstream URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// Also refuse private, loopback, CGNAT and unique-local addresses.
    pub deny_private: bool,
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("is not a valid URL")]
    Invalid,
    #[error("must use http or https")]
    Scheme,
    #[error("must not contain a user name or password")]
    Credentials,
    #[error("points at a link-local or cloud-metadata address")]
    Metadata,
    #[error("points at a private or loopback address, which this server refuses (--deny-private-upstreams)")]
    Private,
}

const METADATA_NAMES: &[&str] =
    &["metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"];

fn metadata_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local() || ip == Ipv4Addr::new(100, 100, 100, 200) || ip.is_unspecified() || ip.is_broadcast()
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`, and the local-use `64:ff9b:1::/48`) or 6to4 (`2002:aabb:ccdd::/48`).
/// A gateway turns these into the IPv4 address, so they are judged as it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let octets = ip.octets();
    let tail = || Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if seg[0] == 0x64 && seg[1] == 0xff9b && (seg[2..6] == [0; 4] || seg[2] == 1) {
        Some(tail())
    } else if seg[0] == 0x2002 {
        Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]))
    } else {
        None
    }
}

fn metadata_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        || ip.is_unspecified()
        || embedded_v4(ip).is_some_and(metadata_v4)
}

fn private_v4(ip: Ipv4Addr) -> bool {
    ip.is_private() || ip.is_loopback() || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn private_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 || embedded_v4(ip).is_some_and(private_v4)
}

impl UpstreamPolicy {
    /// Checks one resolved address (used again at request time, after DNS).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UpstreamError> {
        let (meta, private) = match ip {
            IpAddr::V4(v4) => (metadata_v4(v4), private_v4(v4)),
            IpAddr::V6(v6) => (metadata_v6(v6), private_v6(v6)),
        };
        if meta {
            Err(UpstreamError::Metadata)
        } else if private && self.deny_private {
            Err(UpstreamError::Private)
        } else {
            Ok(())
        }
    }

    /// Checks a URL as configured: scheme, no credentials, and a literal host's address.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, UpstreamError> {
        let url = url::Url::parse(raw.trim()).map_err(|_| UpstreamError::Invalid)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UpstreamError::Credentials);
        }
        match url.host() {
            None => return Err(UpstreamError::Invalid),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if METADATA_NAMES.contains(&name.as_str()) {
                    return Err(UpstreamError::Metadata);
                }
                if self.deny_private && (name == "localhost" || name.ends_with(".localhost")) {
                    return Err(UpstreamError::Private);
                }
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_always_refused_private_on_request() {
        let open = UpstreamPolicy::default();
        let strict = UpstreamPolicy { deny_private: true };
        for bad in [
            "http://169.254.169.254/latest",
            "http://[fd00:ec2::254]/",
            "http://metadata.google.internal/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            // NAT64 and 6to4 gateways reach the IPv4 address inside.
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
        ] {
            assert_eq!(open.check_url(bad).unwrap_err(), UpstreamError::Metadata, "{bad}");
        }
        for private in [
            "http://127.0.0.1:8080/v1",
            "http://10.0.0.5/",
            "http://localhost:11434/v1",
            "http://[::1]/",
            "http://192.168.1.2",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:0a00:0005::1]/",
        ] {
            assert!(open.check_url(private).is_ok(), "{private}");
            assert_eq!(strict.check_url(private).unwrap_err(), UpstreamError::Private, "{private}");
        }
        assert_eq!(open.check_url("ftp://x.com").unwrap_err(), UpstreamError::Scheme);
        assert_eq!(open.check_url("https://u:p@x.com").unwrap_err(), UpstreamError::Credentials);
        assert!(strict.check_url("https://api.openai.com/v1/chat/completions").is_ok());
    }
}
