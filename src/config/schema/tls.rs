//! `[tls]`: the TLS listener, as the file may say it.

use serde::{Deserialize, Serialize};

/// The TLS listener. Without `listen` there is none (and the other keys are refused).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Address of the TLS listener, e.g. `0.0.0.0:8443`. Runs beside the clear `listen`.
    pub listen: Option<String>,
    /// PEM certificate chain, leaf first. Re-read when it changes and on SIGHUP.
    pub cert_file: Option<String>,
    /// PEM private key of the leaf certificate. Re-read with `cert_file`.
    pub key_file: Option<String>,
    /// PEM CA certificates; when set, clients must present a certificate they issued (mTLS).
    pub client_ca_file: Option<String>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`). Default true.
    pub http2: Option<bool>,
    /// Watch the certificate and key files' directories. Default true; SIGHUP reloads either way.
    pub watch: Option<bool>,
}
