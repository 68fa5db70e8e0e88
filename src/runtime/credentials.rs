//! Configured credentials as a runtime uses them: `[credentials.*]` entries become upstream
//! auth (a static header, a token slot, a mapped secret's header), secret mappings become
//! secret-store entries with their fetchers. Slots and entries come from the warm caches, keyed
//! by what they are, so a rebuild finds the ones it already had.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Warm;
use crate::cache::secrets::{Entry, EntrySpec, MappedSecret, SecretKey};
use crate::cache::tokens::{SlotBearer, TokenSlot};
use crate::config::secrets::{SecretUse, SourceConfig};
use crate::config::{Config, Credential};
use crate::credentials::secrets::{aws, keyvault, vault, Fetcher};
use crate::credentials::spec::{ClientSecret, IdentityContext};
use crate::credentials::KEY_VAULT_SCOPE;
use crate::routing::{auth_for, default_scope, secret_auth, UpstreamAuth};
use crate::vocab::Provider;

/// An upstream credential and the secret entry behind it (whose reference's workspace list a
/// caller must be on).
pub type Resolved = (Option<UpstreamAuth>, Option<Arc<Entry>>);

pub struct Builder<'a> {
    config: &'a Config,
    warm: &'a Warm,
    identity: IdentityContext,
    /// One fetcher per reference in this build, shared by its keys (an AppRole login, a Key
    /// Vault token).
    fetchers: HashMap<usize, Fetcher>,
    pinned: Vec<(Arc<str>, Arc<TokenSlot>)>,
    secrets: Vec<Arc<Entry>>,
}

pub struct Built {
    pub pinned: Vec<(Arc<str>, Arc<TokenSlot>)>,
    pub secrets: Vec<Arc<Entry>>,
    /// References nothing maps: never fetched (an unused reference costs nothing, not even a
    /// Key Vault token).
    pub unmapped: Vec<Arc<str>>,
}

impl<'a> Builder<'a> {
    pub fn new(config: &'a Config, warm: &'a Warm, identity: IdentityContext) -> Self {
        Builder {
            config,
            warm,
            identity,
            fetchers: HashMap::new(),
            pinned: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// The token cache header-selected credentials go to.
    pub fn tokens(&self) -> Arc<crate::cache::tokens::TokenCache> {
        self.warm.tokens.clone()
    }

    pub fn finish(mut self) -> Built {
        self.pinned.sort_by(|a, b| a.0.cmp(&b.0));
        self.pinned.dedup_by(|a, b| Arc::ptr_eq(&a.1, &b.1));
        let mut seen = std::collections::HashSet::new();
        self.secrets.retain(|e| seen.insert(e.spec.key));
        let unmapped = (self.config.secrets.references.iter().enumerate())
            .filter(|(i, _)| !self.fetchers.contains_key(i))
            .map(|(_, r)| r.slug.clone())
            .collect();
        Built {
            pinned: self.pinned,
            secrets: self.secrets,
            unmapped,
        }
    }

    /// The upstream credential of `[credentials.<name>]` used with `provider` at `host` (the
    /// host picks the default Entra scope).
    pub fn credential(
        &mut self,
        provider: Provider,
        name: &str,
        host: &str,
    ) -> Result<Resolved, String> {
        let cred = &self.config.credentials[name];
        let entry = cred.secret_uses().map(|u| self.secret(u)).transpose()?;
        let auth = match cred {
            Credential::ApiKey(key) => {
                auth_for(provider, key.expose(), true)?.map(UpstreamAuth::Static)
            }
            Credential::MappedKey(_) => entry.as_ref().and_then(|e| secret_auth(provider, e, true)),
            Credential::Token(t) => {
                let store = self.warm.secrets.clone();
                let mapped = |_: &SecretUse| match &entry {
                    Some(e) => {
                        ClientSecret::Lookup(Arc::new(MappedSecret::new(store.clone(), e.clone())))
                    }
                    // Validation pairs every mapped client secret with its entry.
                    None => ClientSecret::Value(crate::secret::Secret::new("")),
                };
                let spec = t.spec(default_scope(host), &mapped);
                let identity = &self.identity;
                let slot = self
                    .warm
                    .tokens
                    .slot(&spec, true, || identity.source(&spec))
                    .ok_or(
                        "tokens.max_cached is smaller than the number of configured credentials",
                    )?;
                self.pinned.push((Arc::from(name), slot.clone()));
                Some(UpstreamAuth::Token(slot))
            }
        };
        Ok((auth, entry))
    }

    /// The secret entry of a mapped use: (reference, key).
    pub fn secret(&mut self, u: &SecretUse) -> Result<Arc<Entry>, String> {
        let r = &self.config.secrets.references[u.reference];
        let mut h = Sha256::new();
        h.update(r.digest);
        match &u.key {
            Some(k) => h.update([b"k".as_slice(), k.as_bytes()].concat()),
            None => h.update(b"-"),
        }
        let spec = EntrySpec {
            key: SecretKey(h.finalize().into()),
            slug: r.slug.clone(),
            manager: r.manager,
            secret_key: u.key.clone(),
            allowed: r.allowed_workspaces.clone(),
        };
        let fetcher = self.fetcher(u.reference)?;
        let entry = self.warm.secrets.entry(spec, || fetcher);
        self.secrets.push(entry.clone());
        Ok(entry)
    }

    /// The fetcher of reference `i`, made once per build.
    fn fetcher(&mut self, i: usize) -> Result<Fetcher, String> {
        if let Some(f) = self.fetchers.get(&i) {
            return Ok(f.clone());
        }
        let r = &self.config.secrets.references[i];
        let http = self.warm.secret_http.clone();
        let fetcher: Fetcher = match &r.source {
            SourceConfig::Aws(s) => Arc::new(aws::AwsSecret::new(s.clone(), r.path.clone())),
            SourceConfig::Vault(s) => Arc::new(vault::VaultSecret::new(http, s.clone(), &r.path)),
            SourceConfig::KeyVault {
                vault_url,
                credential,
            } => {
                let spec = credential.spec(KEY_VAULT_SCOPE, &|_| {
                    ClientSecret::Value(crate::secret::Secret::new(""))
                });
                let name = format!("secret_references.{}", r.slug);
                // Pinned (fetched before the runtime goes live, gating /readyz) only when
                // secrets are prefetched; otherwise the first secret fetch gets the token.
                let pin = self.config.secrets.prefetch;
                let identity = &self.identity;
                let slot = self
                    .warm
                    .tokens
                    .slot(&spec, pin, || identity.source(&spec))
                    .ok_or_else(|| format!("{name}: tokens.max_cached is too small"))?;
                if pin {
                    self.pinned.push((Arc::from(name.as_str()), slot.clone()));
                }
                Arc::new(keyvault::KeyVaultSecret {
                    http,
                    url: keyvault::secret_url(vault_url, &r.path)
                        .map_err(|m| format!("{name}: {m}"))?,
                    token: Arc::new(SlotBearer {
                        slot,
                        metrics: self.warm.metrics.clone(),
                    }),
                })
            }
        };
        self.fetchers.insert(i, fetcher.clone());
        Ok(fetcher)
    }
}
