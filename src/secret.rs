//! `Secret`: key material that must never reach a log line, an error body or a metric label.
//! Its `Debug` and `Display` print `*****`; the value is read only through `expose()`.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Secret(value.into())
    }

    /// The raw value: call only where it is written into an upstream request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s}"), "*****");
        assert!(!format!("{s:?}").contains("sk-very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
