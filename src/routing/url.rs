//! Base URLs of upstreams: parsed once (config, custom-host header) into the parts a peer needs —
//! TLS or not, host for SNI, port, `Host` header and the path prefix to prepend.

use std::borrow::Cow;

/// Placeholders a default base URL may hold in its host.
pub const RESOURCE: &str = "{resource}";
pub const REGION: &str = "{region}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    /// Lower-case host; IPv6 literals without brackets. May hold `{resource}` / `{region}`.
    pub host: Box<str>,
    pub port: u16,
    /// Path prefix without a trailing `/` (`""` for the root).
    pub path: Box<str>,
    /// Whether the URL spelled a non-default port (then `Host` carries it).
    explicit_port: bool,
}

impl BaseUrl {
    /// Parses `http(s)://host[:port][/path]`. Query, fragment and user info are refused: a base URL
    /// that smuggles credentials or parameters is a configuration mistake.
    pub fn parse(raw: &str) -> Result<BaseUrl, String> {
        // `{…}` is not a valid host character: swap placeholders for markers while parsing.
        let marked = raw
            .replace(RESOURCE, "kwresourcekw")
            .replace(REGION, "kwregionkw");
        let url = url::Url::parse(&marked).map_err(|e| format!("not a URL ({e})"))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("scheme must be http or https, not '{other}'")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user info".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not contain a query or fragment".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("has no host".into()),
        };
        let host = host
            .replace("kwresourcekw", RESOURCE)
            .replace("kwregionkw", REGION);
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let path = url.path().trim_end_matches('/');
        Ok(BaseUrl {
            tls,
            host: host.into(),
            port,
            path: path.into(),
            explicit_port: url.port().is_some(),
        })
    }

    pub fn has_placeholder(&self) -> bool {
        self.host.contains('{')
    }

    /// The host with `{resource}` and `{region}` filled in.
    pub fn host_with<'a>(&'a self, resource: Option<&str>, region: Option<&str>) -> Cow<'a, str> {
        if !self.has_placeholder() {
            return Cow::Borrowed(&self.host);
        }
        let mut host = self.host.to_string();
        if let Some(r) = resource {
            host = host.replace(RESOURCE, &r.to_ascii_lowercase());
        }
        if let Some(r) = region {
            host = host.replace(REGION, &r.to_ascii_lowercase());
        }
        Cow::Owned(host)
    }

    /// The `Host` header value for a concrete host of this URL.
    pub fn host_header(&self, host: &str) -> String {
        let bracketed = if host.contains(':') {
            Cow::Owned(format!("[{host}]"))
        } else {
            Cow::Borrowed(host)
        };
        if self.explicit_port {
            format!("{bracketed}:{}", self.port)
        } else {
            bracketed.into_owned()
        }
    }
}

/// True when `label` is a valid DNS label for an Azure resource name (letters, digits, `-`).
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_overrides() {
        let u = BaseUrl::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            (u.tls, &*u.host, u.port, &*u.path),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(u.host_header("api.openai.com"), "api.openai.com");

        let u = BaseUrl::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (u.tls, &*u.host, u.port, &*u.path),
            (false, "127.0.0.1", 9000, "")
        );
        assert_eq!(u.host_header("127.0.0.1"), "127.0.0.1:9000");

        let u = BaseUrl::parse("http://[::1]:8080/x/").unwrap();
        assert_eq!((&*u.host, &*u.path), ("::1", "/x"));
        assert_eq!(u.host_header("::1"), "[::1]:8080");
    }

    #[test]
    fn placeholders_survive_and_fill() {
        let u = BaseUrl::parse("https://{resource}.openai.azure.com").unwrap();
        assert!(u.has_placeholder());
        assert_eq!(u.host_with(Some("MyRes"), None), "myres.openai.azure.com");
        let b = BaseUrl::parse("https://bedrock-runtime.{region}.amazonaws.com/openai/v1").unwrap();
        assert_eq!(
            b.host_with(None, Some("eu-west-1")),
            "bedrock-runtime.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "ftp://x",
            "https://user:pw@x.com",
            "https://x.com/?a=1",
            "notaurl",
            "https://x.com/#f",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("my-res01"));
        assert!(!is_dns_label("evil.com/x"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
    }
}
