use super::*;
use crate::config::tls::TlsSettings;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::X509NameBuilder;
use pingora_prometheus::prometheus::Registry;

/// A self-signed P-256 certificate for `cn` with `serial`, expiring at `not_after` (unix).
fn self_signed(cn: &str, serial: u32, not_after: i64) -> (String, String) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
    let key = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("keyway-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn write(&self, cert: &str, key: &str) {
        std::fs::write(self.dir.join("tls.crt"), cert).unwrap();
        std::fs::write(self.dir.join("tls.key"), key).unwrap();
    }
    fn settings(&self) -> TlsSettings {
        TlsSettings {
            listen: "127.0.0.1:0".into(),
            cert_file: self.dir.join("tls.crt"),
            key_file: self.dir.join("tls.key"),
            client_ca_file: None,
            http2: true,
            watch: false,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn counter(registry: &Registry, outcome: &str) -> u64 {
    let families = registry.gather();
    let f = families
        .iter()
        .find(|f| f.name() == "keyway_tls_reloads_total")
        .unwrap();
    let m = f
        .get_metric()
        .iter()
        .find(|m| m.get_label()[0].value() == outcome)
        .unwrap();
    m.get_counter().value() as u64
}

#[test]
fn a_pair_loads_and_describes_its_leaf_without_key_material() {
    let files = Files::new("load");
    let (cert, key) = self_signed("one.test", 0x1001, 1_900_000_000);
    files.write(&cert, &key);
    let s = files.settings();
    let pair = CertPair::load(&s.cert_file, &s.key_file).unwrap();
    assert_eq!(pair.not_after_unix(), 1_900_000_000);
    let d = pair.describe();
    assert!(
        d.starts_with("subject CN=one.test, serial 1001, not after "),
        "{d}"
    );
    assert!(!d.contains("PRIVATE"), "{d}");
}

#[test]
fn unusable_pairs_are_refused_with_the_file_named() {
    let files = Files::new("bad");
    let (cert, key) = self_signed("one.test", 1, 1_900_000_000);
    let (_, other_key) = self_signed("two.test", 2, 1_900_000_000);
    let s = files.settings();
    let load = || CertPair::load(&s.cert_file, &s.key_file).map(|_| ());
    files.write(&cert, &other_key);
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("does not belong to the first certificate"),
        "{e}"
    );
    files.write("not a certificate", &key);
    let e = load().unwrap_err().to_string();
    assert!(e.contains("tls.crt holds no PEM certificate"), "{e}");
    files.write(
        &cert,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("tls.key is not a readable PEM private key"),
        "{e}"
    );
    assert!(!e.contains("AAAA"), "{e}");
    std::fs::remove_file(&s.key_file).unwrap();
    assert!(load().unwrap_err().to_string().starts_with("cannot read"));
}

#[test]
fn a_reload_swaps_good_pairs_and_keeps_serving_through_bad_ones() {
    let files = Files::new("reload");
    let (cert, key) = self_signed("one.test", 1, 1_900_000_000);
    files.write(&cert, &key);
    let registry = Registry::new();
    let served = ServedCert::load(&files.settings(), TlsMetrics::new(&registry).unwrap()).unwrap();
    assert_eq!(served.metrics.expiry.get(), 1_900_000_000);
    assert_eq!(served.reload("test"), TlsReloadOutcome::Unchanged);

    let (cert2, key2) = self_signed("two.test", 2, 1_950_000_000);
    files.write(&cert2, &key);
    assert_eq!(served.reload("test"), TlsReloadOutcome::Invalid);
    assert!(served.current.load().describe().contains("CN=one.test"));
    assert_eq!(served.metrics.expiry.get(), 1_900_000_000);

    files.write(&cert2, &key2);
    assert_eq!(served.reload("test"), TlsReloadOutcome::Ok);
    assert!(served.current.load().describe().contains("CN=two.test"));
    assert_eq!(served.metrics.expiry.get(), 1_950_000_000);
    assert_eq!(
        [
            counter(&registry, "ok"),
            counter(&registry, "invalid"),
            counter(&registry, "unchanged")
        ],
        [1, 1, 1]
    );
}
