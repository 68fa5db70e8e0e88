//! `[access_log]` and `[usage]` validated into [`ObserveSettings`] (restart-only: the log's
//! writer and the metric labels are set up once, at start).

use std::path::PathBuf;

use super::{invalid, schema, ConfigError};

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub enabled: bool,
    pub target: LogTarget,
    /// Fraction of requests logged, 0.0 to 1.0.
    pub sample: f64,
    /// Lines queued for the writer before new ones are dropped.
    pub buffer_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    pub enabled: bool,
    /// The `model` label's allow-list.
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObserveSettings {
    pub access_log: AccessLogSettings,
    pub usage: UsageSettings,
}

pub const DEFAULT_BUFFER_LINES: usize = 8192;
/// Most `[usage] models` entries: each one multiplies the token series.
const MAX_MODELS: usize = 256;

pub(super) fn validate_observe(
    log: &schema::observe::AccessLogSection,
    usage: &schema::observe::UsageSection,
) -> Result<ObserveSettings, ConfigError> {
    let sample = log.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        return Err(invalid("access_log.sample", "must be from 0.0 to 1.0"));
    }
    let buffer_lines = log.buffer_lines.unwrap_or(DEFAULT_BUFFER_LINES);
    if !(1..=1 << 20).contains(&buffer_lines) {
        return Err(invalid(
            "access_log.buffer_lines",
            "must be from 1 to 1048576",
        ));
    }
    let target = match log.path.as_deref() {
        None | Some("stdout") => LogTarget::Stdout,
        Some("") => {
            return Err(invalid(
                "access_log.path",
                "is empty: give \"stdout\" or a file",
            ))
        }
        Some(p) => LogTarget::File(PathBuf::from(p)),
    };
    if usage.models.len() > MAX_MODELS {
        return Err(invalid(
            "usage.models",
            format!("at most {MAX_MODELS} models (the others are counted as `other`)"),
        ));
    }
    if let Some(m) = usage.models.iter().find(|m| m.is_empty() || m.len() > 128) {
        return Err(invalid(
            "usage.models",
            format!("'{m}': a model name is 1 to 128 characters"),
        ));
    }
    Ok(ObserveSettings {
        access_log: AccessLogSettings {
            enabled: log.enabled.unwrap_or(false),
            target,
            sample,
            buffer_lines,
        },
        usage: UsageSettings {
            enabled: usage.enabled.unwrap_or(true),
            models: usage.models.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use crate::env::Env;

    use super::*;

    #[test]
    fn defaults_log_nothing_and_count_usage() {
        let c = from_str("", &Env::default()).unwrap();
        let o = &c.observe;
        assert!(!o.access_log.enabled);
        assert_eq!(o.access_log.target, LogTarget::Stdout);
        assert_eq!(o.access_log.sample, 1.0);
        assert_eq!(o.access_log.buffer_lines, DEFAULT_BUFFER_LINES);
        assert!(o.usage.enabled);
        assert!(o.usage.models.is_empty());
    }

    #[test]
    fn fields_are_read_and_checked() {
        let text = "[access_log]\nenabled = true\npath = \"/tmp/a.log\"\nsample = 0.25\n\
                    buffer_lines = 10\n[usage]\nenabled = false\nmodels = [\"gpt-4o\"]\n";
        let o = from_str(text, &Env::default()).unwrap().observe;
        assert!(o.access_log.enabled);
        assert_eq!(o.access_log.target, LogTarget::File("/tmp/a.log".into()));
        assert_eq!(o.access_log.sample, 0.25);
        assert_eq!(o.access_log.buffer_lines, 10);
        assert!(!o.usage.enabled);
        assert_eq!(o.usage.models, vec!["gpt-4o".to_owned()]);
        for (bad, path) in [
            ("[access_log]\nsample = 1.5\n", "access_log.sample"),
            (
                "[access_log]\nbuffer_lines = 0\n",
                "access_log.buffer_lines",
            ),
            ("[access_log]\npath = \"\"\n", "access_log.path"),
            ("[usage]\nmodels = [\"\"]\n", "usage.models"),
            ("[access_log]\nfile = \"x\"\n", "access_log.file"),
        ] {
            let e = from_str(bad, &Env::default()).unwrap_err().to_string();
            assert!(e.contains(path), "{bad}: {e}");
        }
    }
}
