//! `[tracing]` validated: where spans go, with which headers, how many are kept waiting and which
//! share of new traces is recorded. Restart-only (`reload/fixed.rs`): the exporter and its queue
//! are made once.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{invalid, schema::tracing::TracingSection, ConfigError};
use crate::env::Env;
use crate::secret::Secret;

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: url::Url,
    pub service_name: String,
    /// 0.0 to 1.0, for traces keyway starts.
    pub sample_ratio: f64,
    /// Sent with every export request; values never logged.
    pub headers: Vec<(HeaderName, Secret)>,
    pub timeout: Duration,
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
}

// `sample_ratio` is validated finite, so equality is reflexive.
impl Eq for TracingSettings {}

pub const DEFAULT_SERVICE_NAME: &str = "keyway";
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_QUEUE: usize = 2048;
pub const DEFAULT_MAX_BATCH: usize = 512;
pub const DEFAULT_DELAY_MS: u64 = 5000;

pub(super) fn validate(
    t: Option<&TracingSection>,
    env: &Env,
) -> Result<Option<TracingSettings>, ConfigError> {
    let Some(t) = t else {
        return Ok(None);
    };
    let endpoint = t.otlp_endpoint.as_deref().ok_or_else(|| {
        invalid(
            "tracing.otlp_endpoint",
            "is required with [tracing] (e.g. http://127.0.0.1:4318); remove [tracing] to turn tracing off",
        )
    })?;
    let sample_ratio = t.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid("tracing.sample_ratio", "must be from 0.0 to 1.0"));
    }
    let max_queue = t.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE);
    let max_batch = t.max_export_batch_size.unwrap_or(DEFAULT_MAX_BATCH);
    if !(1..=1_000_000).contains(&max_queue) {
        return Err(invalid(
            "tracing.max_queue_size",
            "must be from 1 to 1000000",
        ));
    }
    if max_batch == 0 || max_batch > max_queue {
        return Err(invalid(
            "tracing.max_export_batch_size",
            "must be from 1 to max_queue_size",
        ));
    }
    let service_name = t
        .service_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
    if service_name.is_empty() {
        return Err(invalid("tracing.service_name", "is empty"));
    }
    let millis = |path: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
        0 => Err(invalid(format!("tracing.{path}"), "must be above 0")),
        n => Ok(Duration::from_millis(n)),
    };
    Ok(Some(TracingSettings {
        endpoint: traces_url(endpoint)?,
        service_name,
        sample_ratio,
        headers: headers(t, env)?,
        timeout: millis("timeout_ms", t.timeout_ms, DEFAULT_TIMEOUT_MS)?,
        max_queue,
        max_batch,
        delay: millis("schedule_delay_ms", t.schedule_delay_ms, DEFAULT_DELAY_MS)?,
    }))
}

/// `<base>/v1/traces`, or the URL as given when it already ends so.
fn traces_url(base: &str) -> Result<url::Url, ConfigError> {
    let path = "tracing.otlp_endpoint";
    let mut u = url::Url::parse(base).map_err(|e| {
        invalid(
            path,
            format!("is not a URL ({e}); e.g. http://127.0.0.1:4318"),
        )
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(invalid(
            path,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(invalid(
            path,
            "must not carry credentials: give them in tracing.headers or tracing.headers_env",
        ));
    }
    if !u.path().ends_with("/v1/traces") {
        let p = format!("{}/v1/traces", u.path().trim_end_matches('/'));
        u.set_path(&p);
    }
    Ok(u)
}

fn headers(t: &TracingSection, env: &Env) -> Result<Vec<(HeaderName, Secret)>, ConfigError> {
    let mut out = Vec::new();
    let name_of = |path: String, n: &str| {
        HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| invalid(path, format!("'{n}' is not a header name")))
    };
    for (n, v) in &t.headers {
        out.push((name_of(format!("tracing.headers.{n}"), n)?, v.clone()));
    }
    for (n, var) in &t.headers_env {
        let path = format!("tracing.headers_env.{n}");
        if t.headers.contains_key(n) {
            return Err(invalid(path, "is also in tracing.headers: give one"));
        }
        let v = env.get(var).ok_or_else(|| {
            invalid(
                &path,
                format!("environment variable {var} is not set or empty"),
            )
        })?;
        out.push((name_of(path, n)?, v.to_owned()));
    }
    out.into_iter()
        .map(|(name, v)| match HeaderValue::from_str(&v) {
            Ok(_) => Ok((name, Secret::new(v))),
            Err(_) => Err(invalid(
                format!("tracing.headers.{name}"),
                "is not a valid header value",
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use crate::env::Env;

    #[test]
    fn absent_means_off_and_defaults_fill_the_rest() {
        assert!(from_str("", &Env::default()).unwrap().tracing.is_none());
        let c = from_str(
            "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
            &Env::default(),
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(t.endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.service_name, "keyway");
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!((t.max_queue, t.max_batch), (2048, 512));
        assert_eq!(t.delay.as_millis(), 5000);
    }

    #[test]
    fn headers_come_inline_or_from_the_environment() {
        let env = Env::from_pairs([("OTLP_KEY", "s3cret")]);
        let c = from_str(
            "[tracing]\notlp_endpoint = \"https://c.example/otlp/v1/traces\"\n\
             headers = { x-a = \"1\" }\nheaders_env = { x-key = \"OTLP_KEY\" }\n",
            &env,
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(t.endpoint.as_str(), "https://c.example/otlp/v1/traces");
        let h: Vec<(&str, &str)> = t
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect();
        assert_eq!(h, [("x-a", "1"), ("x-key", "s3cret")]);
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            ("[tracing]\n", "tracing.otlp_endpoint"),
            (
                "[tracing]\notlp_endpoint = \"ftp://x\"\n",
                "tracing.otlp_endpoint",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://u:p@x\"\n",
                "tracing.otlp_endpoint",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://x\"\nsample_ratio = 1.5\n",
                "tracing.sample_ratio",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://x\"\nheaders_env = { x = \"NOPE_UNSET\" }\n",
                "tracing.headers_env.x",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://x\"\nmax_export_batch_size = 9\nmax_queue_size = 8\n",
                "tracing.max_export_batch_size",
            ),
        ];
        for (text, path) in cases {
            let e = from_str(text, &Env::default()).unwrap_err().to_string();
            assert!(e.contains(path), "{text}: {e}");
        }
    }
}
