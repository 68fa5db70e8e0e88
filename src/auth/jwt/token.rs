//! The compact JWS itself: the protected header (`alg`, optional `kid`, no `crit`), the
//! unverified `iss` (only to pick a validator) and the signature check, which verifies nothing
//! else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::JwtFailure;
use crate::auth::jwks::asymmetric_alg;

/// `alg` and `kid` (if any) from the protected header. Only asymmetric algorithms pass; a header
/// with `crit` is refused, since no critical extension is understood here (RFC 7515 §4.1.11).
pub(super) fn read_header(token: &str) -> Result<(Algorithm, Option<String>), JwtFailure> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: Option<String>,
        kid: Option<String>,
        crit: Option<Value>,
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtFailure::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwtFailure::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| JwtFailure::Malformed)?;
    if header.crit.is_some() {
        return Err(JwtFailure::Malformed);
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(asymmetric_alg)
        .ok_or(JwtFailure::Algorithm)?;
    Ok((alg, header.kid.filter(|k| !k.is_empty())))
}

/// The `iss` a token claims, read without verifying anything: only to choose which validator
/// checks it. `None` for anything unreadable.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok()?.iss
}

/// Verifies the signature with `alg` and returns the claims; no claim is checked here.
pub(super) fn verify_signature(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: Algorithm,
) -> Result<Value, JwtFailure> {
    use jsonwebtoken::errors::ErrorKind;
    let mut v = Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    match jsonwebtoken::decode::<Value>(token, key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => JwtFailure::Algorithm,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => JwtFailure::Malformed,
            _ => JwtFailure::Signature,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_refuse_none_hmac_and_crit_and_allow_no_kid() {
        let tok = |h: Value| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h.to_string()));
        assert_eq!(
            read_header(&tok(json!({"alg":"RS256","kid":"k"}))),
            Ok((Algorithm::RS256, Some("k".into())))
        );
        for h in [
            json!({"alg":"none","kid":"k"}),
            json!({"alg":"HS256","kid":"k"}),
            json!({"kid":"k"}),
        ] {
            assert_eq!(read_header(&tok(h)), Err(JwtFailure::Algorithm));
        }
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256"}))),
            Ok((Algorithm::ES256, None))
        );
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256","kid":""}))),
            Ok((Algorithm::ES256, None))
        );
        assert_eq!(
            read_header(&tok(json!({"alg":"ES256","kid":"k","crit":["exp"]}))),
            Err(JwtFailure::Malformed)
        );
        assert_eq!(read_header("a.b"), Err(JwtFailure::Malformed));
        assert_eq!(read_header("!!.b.c"), Err(JwtFailure::Malformed));
    }

    #[test]
    fn unverified_issuer_reads_the_payload_only() {
        let tok = |c: Value| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(c.to_string()));
        assert_eq!(
            unverified_issuer(&tok(json!({"iss":"https://a/"}))).as_deref(),
            Some("https://a/")
        );
        assert_eq!(unverified_issuer(&tok(json!({"iss":7}))), None);
        assert_eq!(unverified_issuer("a.!!.c"), None);
        assert_eq!(unverified_issuer("abc"), None);
    }
}
