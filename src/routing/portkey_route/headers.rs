//! The request headers Portkey routing reads: every `x-portkey-*` header declared once, with
//! its bit, and a request's set of them found in one pass over its names ([`Headers`]).

use http::{HeaderMap, HeaderName};

use super::bad;
use super::RouteError;

/// An `x-portkey-*` header routing reads, with its bit in [`Headers`]' set of those present.
pub(super) struct Named {
    name: HeaderName,
    bit: u32,
}

impl Named {
    pub(super) fn as_str(&'static self) -> &'static str {
        self.name.as_str()
    }
}

/// Declares every `x-portkey-*` header routing reads, each with its own bit, and [`ALL`]: a
/// header missing from this list could never be found by [`Headers::get`], so it is the one
/// place they are named (a 33rd would not compile: its bit overflows).
macro_rules! portkey_headers {
    ($($id:ident = $name:literal,)+) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
        enum Bit {
            $($id,)+
        }
        $(pub(super) static $id: Named = Named {
            name: HeaderName::from_static($name),
            bit: 1 << (Bit::$id as u32),
        };)+
        /// Every `x-portkey-*` header routing reads.
        static ALL: &[&Named] = &[$(&$id,)+];
    };
}

portkey_headers! {
    PROVIDER = "x-portkey-provider",
    CONFIG = "x-portkey-config",
    PORTKEY_API_KEY = "x-portkey-api-key",
    VIRTUAL_KEY = "x-portkey-virtual-key",
    CUSTOM_HOST = "x-portkey-custom-host",
    REQUEST_TIMEOUT = "x-portkey-request-timeout",
    RETRY_COUNT = "x-portkey-retry-count",
    AZURE_RESOURCE = "x-portkey-azure-resource-name",
    AZURE_DEPLOYMENT = "x-portkey-azure-deployment-id",
    AZURE_API_VERSION = "x-portkey-azure-api-version",
    AWS_REGION = "x-portkey-aws-region",
    AWS_ACCESS_KEY_ID = "x-portkey-aws-access-key-id",
    AZURE_AD_TOKEN = "x-portkey-azure-ad-token",
    AZURE_AUTH_MODE = "x-portkey-azure-auth-mode",
    ENTRA_TENANT = "x-portkey-azure-entra-tenant-id",
    ENTRA_CLIENT = "x-portkey-azure-entra-client-id",
    ENTRA_SECRET = "x-portkey-azure-entra-client-secret",
    ENTRA_SCOPE = "x-portkey-azure-entra-scope",
    MANAGED_CLIENT = "x-portkey-azure-managed-client-id",
    WORKLOAD_CLIENT = "x-portkey-azure-workload-client-id",
}

/// A request's headers as routing reads them: which `x-portkey-*` headers of [`ALL`] it carries
/// is found in one pass over its names, so looking up one it does not carry (most of them, on
/// most requests) costs a bit test instead of hashing the name.
#[derive(Clone, Copy)]
pub(super) struct Headers<'a> {
    pub(super) map: &'a HeaderMap,
    pub(super) present: u32,
}

impl<'a> Headers<'a> {
    pub(super) fn scan(map: &'a HeaderMap) -> Headers<'a> {
        let mut present = 0;
        for name in map.keys() {
            if name.as_str().starts_with("x-portkey-") {
                if let Some(n) = ALL.iter().find(|n| n.name == *name) {
                    present |= n.bit;
                }
            }
        }
        Headers { map, present }
    }

    fn get(self, name: &Named) -> Option<&'a http::HeaderValue> {
        match self.present & name.bit {
            0 => None,
            _ => self.map.get(&name.name),
        }
    }

    /// Every header, for those that are not Portkey's (the client's own key).
    pub(super) fn map(self) -> &'a HeaderMap {
        self.map
    }
}

/// A header as text; a value that is not visible ASCII is a client error, not a panic.
pub(super) fn header<'a>(
    h: Headers<'a>,
    name: &'static Named,
) -> Result<Option<&'a str>, RouteError> {
    text(h.get(name), name.as_str())
}

/// A header that is not Portkey's (the client's own key) as text, the same way.
pub(super) fn plain_header<'a>(
    h: Headers<'a>,
    name: &'static HeaderName,
) -> Result<Option<&'a str>, RouteError> {
    text(h.map().get(name), name.as_str())
}

fn text<'a>(
    v: Option<&'a http::HeaderValue>,
    name: &'static str,
) -> Result<Option<&'a str>, RouteError> {
    match v {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| bad(name, "is not valid ASCII text")),
    }
}

/// A field from the target's config, else from its header: a config's targets say where each
/// of them goes, the headers fill in what they leave open (as in Portkey's gateway).
pub(super) fn field<'a>(
    h: Headers<'a>,
    name: &'static Named,
    from_config: Option<&'a str>,
) -> Result<Option<&'a str>, RouteError> {
    match from_config.filter(|v| !v.is_empty()) {
        Some(v) => Ok(Some(v)),
        None => Ok(header(h, name)?.filter(|v| !v.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_portkey_header_has_its_own_bit() {
        let mut seen = 0u32;
        for n in ALL {
            assert!(n.as_str().starts_with("x-portkey-"), "{}", n.as_str());
            assert_eq!(n.bit.count_ones(), 1, "{}", n.as_str());
            assert_eq!(seen & n.bit, 0, "{} shares a bit", n.as_str());
            seen |= n.bit;
        }
        let mut names: Vec<_> = ALL.iter().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn the_scan_finds_exactly_the_portkey_headers_sent() {
        let mut h = HeaderMap::new();
        h.insert(&PROVIDER.name, HeaderValue::from_static("openai"));
        h.append(&VIRTUAL_KEY.name, HeaderValue::from_static("vk-1"));
        h.append(&VIRTUAL_KEY.name, HeaderValue::from_static("vk-2"));
        h.insert("x-portkey-trace-id", HeaderValue::from_static("t"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk"));
        h.insert("x-portkey", HeaderValue::from_static("not one of them"));
        let s = Headers::scan(&h);
        assert_eq!(s.present, PROVIDER.bit | VIRTUAL_KEY.bit);
        assert_eq!(header(s, &PROVIDER).unwrap(), Some("openai"));
        assert_eq!(header(s, &VIRTUAL_KEY).unwrap(), Some("vk-1"));
        for n in ALL.iter().filter(|n| n.bit & s.present == 0) {
            assert_eq!(header(s, n).unwrap(), None, "{}", n.as_str());
        }
        assert_eq!(
            plain_header(s, &http::header::AUTHORIZATION).unwrap(),
            Some("Bearer sk")
        );
        // Every declared header is found when it is the only one sent.
        for n in ALL {
            let mut one = HeaderMap::new();
            one.insert(&n.name, HeaderValue::from_static(" v "));
            let s = Headers::scan(&one);
            assert_eq!(s.present, n.bit, "{}", n.as_str());
            assert_eq!(field(s, n, None).unwrap(), Some("v"), "{}", n.as_str());
        }
    }
}
