//! `x-request-id`: a client's value is kept when it is sane, otherwise keyway makes one. The
//! id goes upstream with the request and back to the client on every answer.

use http::HeaderValue;

pub const HEADER: http::HeaderName = http::HeaderName::from_static(NAME);
/// The name as Pingora's header inserts take it without copying it.
pub const NAME: &str = "x-request-id";

/// Longest client id kept; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// Whether a client's id may be kept: 1 to [`MAX_LEN`] visible ASCII characters (no spaces,
/// no control characters), so it is safe in a log line and a header as it is.
pub fn is_sane(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| b.is_ascii_graphic())
}

/// The client's id when sane, else a new one (a random UUID v4 from the thread's generator:
/// no system call per request).
pub fn accept_or_make(client: Option<&HeaderValue>) -> HeaderValue {
    match client {
        Some(v) if is_sane(v.as_bytes()) => v.clone(),
        _ => make(),
    }
}

/// A new id. Its bytes are allocated once and shared by every copy of the value (the request
/// upstream, the answer, the access log).
pub fn make() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_others_replaced() {
        let keep = HeaderValue::from_static("req-42_A.b:c");
        assert_eq!(accept_or_make(Some(&keep)), keep);
        let long = HeaderValue::from_str(&"a".repeat(MAX_LEN + 1)).unwrap();
        let longest = HeaderValue::from_str(&"a".repeat(MAX_LEN)).unwrap();
        assert_eq!(accept_or_make(Some(&longest)), longest);
        for bad in [
            HeaderValue::from_static("has space"),
            HeaderValue::from_static(""),
            long,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ] {
            let made = accept_or_make(Some(&bad));
            assert_ne!(made, bad);
            assert_eq!(made.len(), 36, "{made:?}");
        }
        let a = accept_or_make(None);
        let s = a.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "version 4: {s}");
        assert_ne!(make(), make());
    }
}
