//! `[tls]`: where the TLS listener is and which files it serves. Only paths are checked here;
//! the files are read when the listener starts and again on every change (`proxy::tls`).

use std::path::PathBuf;

use super::{check_addr, invalid, schema::tls::TlsSection, ConfigError};

/// The TLS listener. The address, the files' paths, mTLS and ALPN are restart-only; the
/// certificate and key files' *contents* are reloaded live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub listen: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate issued by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// ALPN offers `h2` before `http/1.1`; false: HTTP/1.1 only.
    pub http2: bool,
    /// Watch the files' directories (SIGHUP reloads either way).
    pub watch: bool,
}

pub(super) fn validate_tls(t: &TlsSection) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(listen) = t.listen.clone() else {
        let set = t.cert_file.is_some()
            || t.key_file.is_some()
            || t.client_ca_file.is_some()
            || t.http2.is_some()
            || t.watch.is_some();
        return match set {
            true => Err(invalid(
                "tls.listen",
                "is missing: set it (e.g. \"0.0.0.0:8443\") to turn the TLS listener on",
            )),
            false => Ok(None),
        };
    };
    check_addr("tls.listen", &listen)?;
    let file = |name: &str, v: &Option<String>| match v.as_deref() {
        Some("") => Err(invalid(format!("tls.{name}"), "is empty")),
        Some(p) => Ok(Some(PathBuf::from(p))),
        None => Ok(None),
    };
    let required = |name: &str, v: &Option<String>| {
        file(name, v)?.ok_or_else(|| {
            invalid(
                format!("tls.{name}"),
                "is missing: the TLS listener needs a PEM certificate chain and its key",
            )
        })
    };
    Ok(Some(TlsSettings {
        listen,
        cert_file: required("cert_file", &t.cert_file)?,
        key_file: required("key_file", &t.key_file)?,
        client_ca_file: file("client_ca_file", &t.client_ca_file)?,
        http2: t.http2.unwrap_or(true),
        watch: t.watch.unwrap_or(true),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use crate::env::Env;

    fn err(text: &str) -> String {
        from_str(text, &Env::default()).unwrap_err().to_string()
    }

    #[test]
    fn tls_listener_settings_and_their_errors() {
        let c = from_str("", &Env::default()).unwrap();
        assert_eq!(c.tls, None);
        let c = from_str(
            "[tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n",
            &Env::default(),
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.listen, "127.0.0.1:8443");
        assert_eq!(t.cert_file.to_str(), Some("/c.pem"));
        assert_eq!(t.key_file.to_str(), Some("/k.pem"));
        assert_eq!((t.client_ca_file, t.http2, t.watch), (None, true, true));
        let e = err("[tls]\ncert_file = \"/c.pem\"\n");
        assert!(e.contains("tls.listen: is missing"), "{e}");
        let e = err("[tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"/c.pem\"\n");
        assert!(e.contains("tls.key_file: is missing"), "{e}");
        let e = err("[tls]\nlisten = \"localhost\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n");
        assert!(e.contains("tls.listen"), "{e}");
        let e = err("[tls]\nlisten = \"127.0.0.1:1\"\ncert_file = \"\"\nkey_file = \"/k\"\n");
        assert!(e.contains("tls.cert_file: is empty"), "{e}");
        assert!(err("[tls]\ncert = \"/c\"\n").contains("cert"));
    }

    #[test]
    fn http2_limits_and_the_upgrade_socket() {
        let c = from_str("", &Env::default()).unwrap();
        let h2 = c.listener.h2;
        assert_eq!((h2.h2c, h2.max_concurrent_streams), (false, 100));
        assert_eq!(h2.max_header_list_bytes, 65536);
        assert_eq!(h2.idle_timeout, Some(std::time::Duration::from_secs(60)));
        assert_eq!(c.upgrade_socket, "/tmp/keyway_upgrade.sock");
        let c = from_str(
            "[listener]\nh2c = true\nh2_max_concurrent_streams = 8\nh2_max_header_list_bytes = 4096\nh2_idle_timeout_seconds = 0\nupgrade_socket = \"/run/k.sock\"\n",
            &Env::default(),
        )
        .unwrap();
        let h2 = c.listener.h2;
        assert_eq!((h2.h2c, h2.max_concurrent_streams), (true, 8));
        assert_eq!((h2.max_header_list_bytes, h2.idle_timeout), (4096, None));
        assert_eq!(c.upgrade_socket, "/run/k.sock");
        let e = err("[listener]\nh2_max_concurrent_streams = 0\n");
        assert!(e.contains("listener.h2_max_concurrent_streams"), "{e}");
        let e = err("[listener]\nh2_max_header_list_bytes = 10\n");
        assert!(e.contains("listener.h2_max_header_list_bytes"), "{e}");
        let e = err("[listener]\nupgrade_socket = \"k.sock\"\n");
        assert!(
            e.contains("listener.upgrade_socket: must be an absolute path"),
            "{e}"
        );
    }
}
