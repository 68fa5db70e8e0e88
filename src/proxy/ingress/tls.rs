//! The TLS listener: the certificate pair it serves, swapped whole when the files change, and
//! Pingora's TLS settings around it (Mozilla intermediate: TLS 1.2 and 1.3; ALPN `h2` then
//! `http/1.1`; optional client certificates). Every handshake asks the certificate callback for
//! the pair of the moment, so a rotation needs no new listener and drops no connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslVerifyMode, SslVersion};
use openssl::x509::{X509Name, X509};
use pingora::listeners::tls::TlsSettings as PingoraTls;
use pingora::listeners::{TlsAccept, ALPN};
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;

use crate::config::tls::TlsSettings;
use crate::metrics::tls::{TlsMetrics, TlsReloadOutcome};

/// Why a certificate pair cannot serve. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate: give the chain, leaf first")]
    NoCertificate { path: String },
    #[error("{path} is not a readable PEM private key (encrypted keys are not supported)")]
    Key { path: String },
    #[error("the key in {key} does not belong to the first certificate of {cert}")]
    Mismatch { cert: String, key: String },
    #[error("client CA file {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS settings: {0}")]
    Settings(String),
}

/// A leaf certificate, its chain and its key, checked to belong together.
pub struct CertPair {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl CertPair {
    pub fn load(cert: &Path, key: &Path) -> Result<CertPair, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let chain = X509::stack_from_pem(&cert_pem).unwrap_or_default();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert.display().to_string(),
            });
        }
        let key_error = || TlsError::Key {
            path: key.display().to_string(),
        };
        let key_of = PKey::private_key_from_pem(&key_pem).map_err(|_| key_error())?;
        let matches = chain[0]
            .public_key()
            .is_ok_and(|public| public.public_eq(&key_of));
        if !matches {
            return Err(TlsError::Mismatch {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
            });
        }
        Ok(CertPair { chain, key: key_of })
    }

    fn leaf(&self) -> &X509 {
        &self.chain[0]
    }

    /// The leaf's subject, serial and notAfter, for logs (nothing secret).
    pub fn describe(&self) -> String {
        let leaf = self.leaf();
        let subject = leaf
            .subject_name()
            .entries()
            .filter_map(|e| {
                let name = e.object().nid().short_name().ok()?;
                Some(format!(
                    "{name}={}",
                    String::from_utf8_lossy(e.data().as_slice())
                ))
            })
            .collect::<Vec<_>>()
            .join(",");
        let serial = leaf
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "subject {subject}, serial {serial}, not after {}",
            leaf.not_after()
        )
    }

    /// Unix time of the leaf's notAfter.
    pub fn not_after_unix(&self) -> i64 {
        let diff = Asn1Time::from_unix(0).and_then(|epoch| epoch.diff(self.leaf().not_after()));
        diff.map_or(0, |d| i64::from(d.days) * 86_400 + i64::from(d.secs))
    }

    fn same_as(&self, other: &CertPair) -> bool {
        let der = |p: &CertPair| p.chain.iter().map(|c| c.to_der().ok()).collect::<Vec<_>>();
        der(self) == der(other) && self.key.public_eq(&other.key)
    }
}

/// The pair the TLS listener serves, and where it comes from.
pub struct ServedCert {
    current: ArcSwap<CertPair>,
    cert_file: PathBuf,
    key_file: PathBuf,
    metrics: TlsMetrics,
}

impl ServedCert {
    /// Loads the pair; keyway does not start without one.
    pub fn load(settings: &TlsSettings, metrics: TlsMetrics) -> Result<ServedCert, TlsError> {
        let pair = CertPair::load(&settings.cert_file, &settings.key_file)?;
        log::info!("TLS certificate loaded: {}", pair.describe());
        metrics.expiry.set(pair.not_after_unix());
        Ok(ServedCert {
            current: ArcSwap::from_pointee(pair),
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            metrics,
        })
    }

    pub fn files(&self) -> [&Path; 2] {
        [&self.cert_file, &self.key_file]
    }

    /// Re-reads the files. A pair that cannot serve leaves the old one serving.
    pub fn reload(&self, why: &str) -> TlsReloadOutcome {
        let outcome = match CertPair::load(&self.cert_file, &self.key_file) {
            Err(e) => {
                log::error!("TLS certificate reload ({why}) refused, the previous certificate keeps serving: {e}");
                TlsReloadOutcome::Invalid
            }
            Ok(pair) if pair.same_as(&self.current.load()) => TlsReloadOutcome::Unchanged,
            Ok(pair) => {
                log::info!("TLS certificate reloaded ({why}): {}", pair.describe());
                self.metrics.expiry.set(pair.not_after_unix());
                self.current.store(Arc::new(pair));
                TlsReloadOutcome::Ok
            }
        };
        self.metrics.reload(outcome);
        outcome
    }
}

/// Hands each handshake the pair of the moment.
struct CertCallback(Arc<ServedCert>);

#[async_trait]
impl TlsAccept for CertCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let pair = self.0.current.load();
        let mut set = ext::ssl_use_certificate(ssl, pair.leaf())
            .and_then(|()| ext::ssl_use_private_key(ssl, &pair.key));
        for c in &pair.chain[1..] {
            set = set.and_then(|()| ext::ssl_add_chain_cert(ssl, c));
        }
        if let Err(e) = set {
            log::error!("TLS handshake: cannot use the served certificate: {e}");
        }
    }
}

/// Pingora's settings for the TLS listener, serving from `served`.
pub fn listener_settings(
    settings: &TlsSettings,
    served: Arc<ServedCert>,
) -> Result<PingoraTls, TlsError> {
    let fail = |e: pingora::BError| TlsError::Settings(e.to_string());
    let mut tls = PingoraTls::with_callbacks(Box::new(CertCallback(served))).map_err(fail)?;
    let floor = tls.set_min_proto_version(Some(SslVersion::TLS1_2));
    floor.map_err(|e| TlsError::Settings(e.to_string()))?;
    tls.set_alpn(if settings.http2 { ALPN::H2H1 } else { ALPN::H1 });
    if let Some(ca) = &settings.client_ca_file {
        require_client_certs(&mut tls, ca)?;
    }
    Ok(tls)
}

/// mTLS: the handshake fails without a client certificate issued by one of `ca`'s CAs.
fn require_client_certs(tls: &mut PingoraTls, ca: &Path) -> Result<(), TlsError> {
    let fail = |e: openssl::error::ErrorStack| TlsError::ClientCa {
        path: ca.display().to_string(),
        message: e.to_string(),
    };
    tls.set_ca_file(ca).map_err(fail)?;
    tls.set_client_ca_list(X509Name::load_client_ca_file(ca).map_err(fail)?);
    tls.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    // Resumed sessions must carry the same verification context.
    tls.set_session_id_context(b"keyway").map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests;
