//! What a secret reference *is*, as a digest: everything that decides the value it reads
//! (manager, endpoint, credentials, path, default key, who may use it). Two configurations
//! that give a reference the same digest share its cache entry across a reload; any change to
//! it (a rotated Vault token in the file, another path) makes a new entry, fetched afresh.

use sha2::{Digest, Sha256};

use super::{SecretReference, SourceConfig};
use crate::credentials::secrets::aws::AwsAuth;
use crate::credentials::secrets::vault::VaultAuth;
use crate::credentials::spec::ClientSecret;
use crate::credentials::KEY_VAULT_SCOPE;
use crate::secret::Secret;

/// Length-prefixed fields, so ("ab","c") and ("a","bc") differ.
struct Fields(Sha256);

impl Fields {
    fn add(&mut self, v: &[u8]) -> &mut Self {
        self.0.update((v.len() as u64).to_le_bytes());
        self.0.update(v);
        self
    }

    fn s(&mut self, v: &str) -> &mut Self {
        self.add(v.as_bytes())
    }

    fn opt(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.s("some").s(v),
            None => self.s("none"),
        }
    }

    fn secret(&mut self, v: &Secret) -> &mut Self {
        self.s(v.expose())
    }
}

/// The digest of a validated reference.
pub(super) fn reference_digest(r: &SecretReference) -> [u8; 32] {
    let mut f = Fields(Sha256::new());
    f.s(&r.slug)
        .s(r.manager.as_str())
        .s(&r.path)
        .opt(r.key.as_deref());
    match &r.allowed_workspaces {
        None => f.s("all-workspaces"),
        Some(list) => list.iter().fold(f.s("workspaces"), |f, w| f.s(w)),
    };
    match &r.source {
        SourceConfig::Aws(a) => {
            match &a.auth {
                AwsAuth::AccessKey {
                    access_key_id,
                    secret_access_key,
                } => f
                    .s("accessKey")
                    .secret(access_key_id)
                    .secret(secret_access_key),
                AwsAuth::AssumedRole {
                    role_arn,
                    external_id,
                } => f
                    .s("assumedRole")
                    .secret(role_arn)
                    .opt(external_id.as_ref().map(Secret::expose)),
                AwsAuth::ServiceRole => f.s("serviceRole"),
            };
            f.opt(a.region.as_deref())
                .opt(a.endpoint.as_deref())
                .opt(a.sts_endpoint.as_deref());
        }
        SourceConfig::KeyVault {
            vault_url,
            credential,
        } => {
            let spec = credential.spec(KEY_VAULT_SCOPE, &|_| ClientSecret::Value(Secret::new("")));
            f.s("kv").s(vault_url).add(&spec.key().bytes());
        }
        SourceConfig::Vault(v) => {
            f.s("vault").s(v.addr.as_str());
            match &v.auth {
                VaultAuth::Token(t) => f.s("token").secret(t),
                VaultAuth::AppRole {
                    role_id,
                    secret_id,
                    mount,
                } => f.s("approle").s(role_id).secret(secret_id).s(mount),
            };
            f.opt(v.namespace.as_deref())
                .s(&v.mount)
                .add(&[v.kv_version]);
        }
    }
    f.0.finalize().into()
}
