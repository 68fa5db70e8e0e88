//! What a reload cannot change: the command line's overrides (applied to every configuration
//! read) and the settings only a restart changes (listeners, threads, the store, the identity
//! endpoints the warm caches' token sources were made against, the trace exporter).

use std::time::Duration;

use crate::config::{self, Config};

/// What the command line fixed, applied to every configuration read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub threads: Option<usize>,
    pub admin_listen: Option<String>,
}

impl Overrides {
    pub fn apply(&self, c: &mut Config) -> Result<(), config::ConfigError> {
        if let Some(l) = &self.listen {
            c.listen = l.clone();
        }
        if let Some(m) = &self.metrics_listen {
            c.metrics_listen = m.clone();
        }
        if let Some(t) = self.threads {
            c.threads = t;
        }
        if let Some(a) = &self.admin_listen {
            c.admin.listen = a.clone();
        }
        config::check_overrides(c)
    }
}

/// The settings only a restart changes, as the process started with them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fixed {
    listen: String,
    metrics_listen: String,
    threads: usize,
    work_stealing: bool,
    grace_period: Duration,
    ca_file: Option<String>,
    listener: crate::config::ListenerSettings,
    tls: Option<crate::config::tls::TlsSettings>,
    upgrade_socket: String,
    limits: crate::config::LimitSettings,
    keepalive_pool: usize,
    pub(super) watch_config: bool,
    admin: crate::config::control::AdminSettings,
    pub(super) store: Option<crate::store::StoreSettings>,
    observe: crate::config::observe::ObserveSettings,
    /// Where Entra, IMDS, App Service identity, STS and Secrets Manager are: every token source
    /// and secret fetcher was made against them.
    endpoints: Endpoints,
    /// The trace exporter and its queue are made once.
    tracing: Option<crate::config::tracing::TracingSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    authority: String,
    imds: String,
    app_service: Option<String>,
    aws_region: Option<String>,
    sts: Option<String>,
    secretsmanager: Option<String>,
}

impl Endpoints {
    fn of(c: &Config) -> Endpoints {
        let i = &c.identity;
        Endpoints {
            authority: i.authority.clone(),
            imds: i.imds_endpoint.clone(),
            app_service: i.app_service.as_ref().map(|(e, _)| e.clone()),
            aws_region: i.aws_region.clone(),
            sts: i.sts_endpoint.clone(),
            secretsmanager: i.secretsmanager_endpoint.clone(),
        }
    }
}

impl Fixed {
    pub(super) fn of(c: &Config) -> Fixed {
        Fixed {
            listen: c.listen.clone(),
            metrics_listen: c.metrics_listen.clone(),
            threads: c.threads,
            work_stealing: c.work_stealing,
            grace_period: c.grace_period,
            ca_file: c.ca_file.clone(),
            listener: c.listener,
            tls: c.tls.clone(),
            upgrade_socket: c.upgrade_socket.clone(),
            limits: c.limits,
            keepalive_pool: c.keepalive_pool,
            watch_config: c.watch_config,
            admin: c.admin.clone(),
            store: c.store.clone(),
            observe: c.observe.clone(),
            endpoints: Endpoints::of(c),
            tracing: c.tracing.clone(),
        }
    }

    /// The names of the settings `new` changes.
    pub(super) fn changed(&self, new: &Fixed) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("listen", self.listen != new.listen);
        check("metrics_listen", self.metrics_listen != new.metrics_listen);
        check("threads", self.threads != new.threads);
        check("work_stealing", self.work_stealing != new.work_stealing);
        check(
            "grace_period_seconds",
            self.grace_period != new.grace_period,
        );
        check("ca_file", self.ca_file != new.ca_file);
        check(
            "[listener]",
            self.listener != new.listener || self.upgrade_socket != new.upgrade_socket,
        );
        // The certificate and key files' contents reload live (proxy::tls), not their paths.
        check("[tls]", self.tls != new.tls);
        check("[limits]", self.limits != new.limits);
        check(
            "upstream.keepalive_pool_size",
            self.keepalive_pool != new.keepalive_pool,
        );
        check("watch_config", self.watch_config != new.watch_config);
        check("[admin]", self.admin != new.admin);
        check("[store]", self.store != new.store);
        check(
            "[access_log]",
            self.observe.access_log != new.observe.access_log,
        );
        check("[usage]", self.observe.usage != new.observe.usage);
        check("[azure]/[aws] endpoints", self.endpoints != new.endpoints);
        check("[tracing]", self.tracing != new.tracing);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Env;

    #[test]
    fn fixed_settings_that_changed_are_named() {
        let a = config::from_str("", &Env::default()).unwrap();
        let mut b = a.clone();
        b.threads += 1;
        b.listen = "127.0.0.1:1".into();
        b.grace_period = Duration::from_secs(1);
        b.admin.listen = "127.0.0.1:2".into();
        b.listener.write_buffer += 1;
        b.limits.max_uri_bytes += 1;
        b.keepalive_pool += 1;
        b.observe.access_log.sample = 0.5;
        b.observe.usage.models.push("gpt-4o".into());
        b.tracing = config::from_str(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:1\"\n",
            &Env::default(),
        )
        .unwrap()
        .tracing;
        assert_eq!(
            Fixed::of(&a).changed(&Fixed::of(&b)),
            [
                "listen",
                "threads",
                "grace_period_seconds",
                "[listener]",
                "[limits]",
                "upstream.keepalive_pool_size",
                "[admin]",
                "[access_log]",
                "[usage]",
                "[tracing]"
            ]
        );
        assert!(Fixed::of(&a).changed(&Fixed::of(&a)).is_empty());
    }

    #[test]
    fn the_tls_listener_and_the_upgrade_socket_are_restart_only() {
        let a = config::from_str("", &Env::default()).unwrap();
        let tls = "[tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n";
        let b = config::from_str(tls, &Env::default()).unwrap();
        assert_eq!(Fixed::of(&a).changed(&Fixed::of(&b)), ["[tls]"]);
        let mut c = a.clone();
        c.upgrade_socket = "/run/keyway.sock".into();
        c.listener.h2.h2c = true;
        assert_eq!(Fixed::of(&a).changed(&Fixed::of(&c)), ["[listener]"]);
    }
}
