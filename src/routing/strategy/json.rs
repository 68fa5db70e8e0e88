//! Small readers of the config JSON that parsing, retries and circuits share.

use serde_json::Value;

use super::StrategyError;

/// The first of `names` present in `obj`, with the spelling found.
pub(crate) fn field<'v>(
    obj: &'v serde_json::Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'v Value)> {
    names.iter().find_map(|n| obj.get(*n).map(|v| (*n, v)))
}

/// An array of HTTP status codes (integers 100..=599).
pub(crate) fn status_codes(v: &Value, path: &str) -> Result<Vec<u16>, StrategyError> {
    let bad = || {
        StrategyError::new(
            path,
            "must be an array of HTTP status codes (integers 100 to 599)",
        )
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            c.as_u64()
                .filter(|c| (100..=599).contains(c))
                .map(|c| c as u16)
                .ok_or_else(bad)
        })
        .collect()
}
