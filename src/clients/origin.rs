//! Which browser origins may use a client's widget and socket. Hosts only are compared (scheme
//! and port ignored), case-insensitively, without a trailing dot and in IDNA ASCII form.
//! `shop.com` matches only itself, `*.shop.com` any subdomain depth but not `shop.com`, `*`
//! alone any origin; an empty list accepts no browser origin. Origin is not authentication:
//! non-browser clients can send any header they like.

/// One allowed-domain entry, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every origin.
    Any,
    /// `*.suffix`: subdomains of `suffix` at any depth.
    Subdomains(String),
    /// An exact host.
    Exact(String),
}

/// Why an allowed-domain entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a host name, '*.' + host name, or '*'")]
pub struct BadPattern(pub String);

/// Normalises a host: lowercase, IDNA ASCII, no trailing dot. `None` if it is not a host.
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.');
    if host.is_empty() || host.contains(['/', '@', ':', ' ', '*']) && !host.starts_with('[') {
        return None;
    }
    match url::Host::parse(host).ok()? {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_string()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(format!("[{ip}]")),
    }
}

impl Pattern {
    /// Parses one entry; a full URL (`https://shop.com/`) is accepted and reduced to its host.
    pub fn parse(entry: &str) -> Result<Pattern, BadPattern> {
        let raw = entry.trim();
        let bad = || BadPattern(raw.to_string());
        if raw == "*" {
            return Ok(Pattern::Any);
        }
        let host_part = if raw.contains("://") {
            url::Url::parse(raw).ok().and_then(|u| u.host_str().map(str::to_string)).ok_or_else(bad)?
        } else {
            raw.to_string()
        };
        if let Some(suffix) = host_part.strip_prefix("*.") {
            return normalize_host(suffix).map(Pattern::Subdomains).ok_or_else(bad);
        }
        normalize_host(&host_part).map(Pattern::Exact).ok_or_else(bad)
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(h) => h == host,
            Pattern::Subdomains(suffix) => {
                host.strip_suffix(suffix.as_str()).is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
            }
        }
    }

    /// The normalised text form stored in settings.
    pub fn as_text(&self) -> String {
        match self {
            Pattern::Any => "*".into(),
            Pattern::Subdomains(s) => format!("*.{s}"),
            Pattern::Exact(h) => h.clone(),
        }
    }
}

/// A client's allowed origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginRules {
    patterns: Vec<Pattern>,
}

impl OriginRules {
    /// Parses a comma- or whitespace-separated list.
    pub fn parse(list: &str) -> Result<OriginRules, BadPattern> {
        let patterns = split_list(list).map(Pattern::parse).collect::<Result<_, _>>()?;
        Ok(OriginRules { patterns })
    }

    /// The normalised list as stored.
    pub fn to_text(&self) -> String {
        self.patterns.iter().map(Pattern::as_text).collect::<Vec<_>>().join(",")
    }

    /// Whether no browser origin is accepted.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether an `Origin` header value is allowed. `null` and anything unparsable are not.
    pub fn allows(&self, origin: &str) -> bool {
        let Ok(url) = url::Url::parse(origin.trim()) else {
            return false;
        };
        let Some(host) = url.host_str().and_then(normalize_host) else {
            return false;
        };
        self.patterns.iter().any(|p| p.matches(&host))
    }
}

/// Splits a list setting on commas and whitespace, dropping empty items.
pub fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_table() {
        let rules = OriginRules::parse("shop.com, *.shop.com, Bücher.example.").unwrap();
        for (origin, ok) in [
            ("https://shop.com", true),
            ("http://shop.com:8080", true),
            ("https://SHOP.com.", true),
            ("https://a.b.shop.com", true),
            ("https://evilshop.com", false),
            ("https://shop.com.evil.net", false),
            ("https://shop.com@evil.net", false),
            ("https://xn--bcher-kva.example", true),
            ("https://bücher.example", true),
            ("null", false),
            ("", false),
        ] {
            assert_eq!(rules.allows(origin), ok, "{origin}");
        }
        let sub_only = OriginRules::parse("*.shop.com").unwrap();
        assert!(!sub_only.allows("https://shop.com"));
        assert!(OriginRules::parse("*").unwrap().allows("https://anything.net"));
        assert!(!OriginRules::parse("").unwrap().allows("https://shop.com"));
        assert!(OriginRules::parse("shop.com/path").is_err());
        assert!(OriginRules::parse("*shop.com").is_err());
    }

    /// The hosts an attacker would try against `shop.com`, each with the host a browser would
    /// really be on (the oracle: built, not parsed), or `None` when no browser origin has it.
    fn host_case() -> impl proptest::strategy::Strategy<Value = (String, Option<String>)> {
        use proptest::prelude::*;
        let label = "[a-z][a-z0-9-]{0,8}[a-z0-9]";
        prop_oneof![
            Just(("shop.com".to_string(), Some("shop.com".to_string()))),
            Just(("shop.com.".to_string(), Some("shop.com".to_string()))),
            Just(("SHOP.Com".to_string(), Some("shop.com".to_string()))),
            prop::collection::vec(label, 1..4).prop_map(|labels| {
                let host = format!("{}.shop.com", labels.join("."));
                (host.clone(), Some(host))
            }),
            label.prop_map(|l| (format!("{l}shop.com"), Some(format!("{l}shop.com")))),
            label.prop_map(|l| (format!("shop.com.{l}.net"), Some(format!("shop.com.{l}.net")))),
            label.prop_map(|l| (format!("shop.com-{l}.net"), Some(format!("shop.com-{l}.net")))),
            Just(("shop.co".to_string(), Some("shop.co".to_string()))),
            Just(("shop.comm".to_string(), Some("shop.comm".to_string()))),
            // IDN look-alikes: a Cyrillic "о", a Greek omicron.
            Just(("sh\u{43e}p.com".to_string(), Some("xn--shp-ved.com".to_string()))),
            Just(("sh\u{3bf}p.com".to_string(), Some("xn--shp-jmc.com".to_string()))),
            // Percent-encoding is decoded in hosts (WHATWG): these are the hosts they spell.
            Just(("shop%2Ecom".to_string(), Some("shop.com".to_string()))),
            Just(("shop.com%2Eevil.net".to_string(), Some("shop.com.evil.net".to_string()))),
            Just(("127.0.0.1".to_string(), Some("127.0.0.1".to_string()))),
            Just(("[::1]".to_string(), Some("[::1]".to_string()))),
            Just(("[::ffff:7f00:1]".to_string(), Some("[::ffff:127.0.0.1]".to_string()))),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Whatever surrounds the host (scheme, userinfo naming the shop, port, case), only the
        /// host the browser is really on decides, exactly as the pattern says.
        #[test]
        fn origins_match_only_the_host_the_browser_is_on(
            scheme in proptest::sample::select(vec!["http", "https", "HTTPS"]),
            userinfo in proptest::option::of(proptest::sample::select(vec!["shop.com", "user:pw", "shop.com:443"])),
            (host, real) in host_case(),
            port in proptest::option::of(1u16..),
        ) {
            let mut origin = format!("{scheme}://");
            if let Some(u) = userinfo {
                origin.push_str(u);
                origin.push('@');
            }
            let real = real.map(|h| h.to_lowercase());
            origin.push_str(&host);
            if let Some(port) = port {
                origin.push_str(&format!(":{port}"));
            }
            let exact = OriginRules::parse("shop.com").unwrap();
            let subdomains = OriginRules::parse("*.shop.com").unwrap();
            let real = real.as_deref();
            let want_exact = real == Some("shop.com");
            let want_sub = real.is_some_and(|h| h.len() > ".shop.com".len() && h.ends_with(".shop.com"));
            // Userinfo never makes an origin the shop's; the host behind it decides.
            proptest::prop_assert_eq!(exact.allows(&origin), want_exact, "{} with shop.com", origin);
            proptest::prop_assert_eq!(subdomains.allows(&origin), want_sub, "{} with *.shop.com", origin);
        }
    }
}
