//! The `model` label of the token metrics: an entry of `[usage] models`, else `other`.
//!
//! An answer's model matches an entry when it is the entry itself, or the entry followed by
//! `-` and a date, the way providers name their snapshots: `-YYYY-MM-DD` (OpenAI's
//! `gpt-4o-2024-08-06` counts as `gpt-4o`) or `-YYYYMMDD` (Anthropic's
//! `claude-3-5-sonnet-20241022` as `claude-3-5-sonnet`). Nothing else follows the date, and
//! other suffixes do not match (`gpt-4o-mini` is not `gpt-4o`). An exact entry wins over a
//! shorter one (`gpt-4o-2024-08-06` listed too keeps its own label); otherwise the first
//! matching entry in the list does. The label is always the entry, so the label set stays the
//! allow-list plus `other`.

/// The label for `model` among `models`.
pub fn label<'a>(models: &'a [Box<str>], model: Option<&str>) -> &'a str {
    let Some(m) = model else {
        return "other";
    };
    let exact = models.iter().find(|e| ***e == *m);
    let dated = || models.iter().find(|e| dated_snapshot(m, e));
    exact.or_else(dated).map_or("other", |e| e)
}

/// Whether `model` is `entry-<date>`.
fn dated_snapshot(model: &str, entry: &str) -> bool {
    let Some(date) = model.strip_prefix(entry).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        8 => digits(0..8),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<Box<str>> {
        v.iter().map(|s| (*s).into()).collect()
    }

    #[test]
    fn exact_names_and_dated_snapshots_match_others_do_not() {
        let models = list(&["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "o1"]);
        for (model, want) in [
            ("gpt-4o", "gpt-4o"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
            ("o1-2024-12-17", "o1"),
            // Not a date, or more after it, or no dash: other.
            ("gpt-4o-audio-preview", "other"),
            ("gpt-4o-2024-08-06-extra", "other"),
            ("gpt-4o-2024-8-6", "other"),
            ("gpt-4o-202408", "other"),
            ("gpt-4o-2024_08_06", "other"),
            ("gpt-4o2024-08-06", "other"),
            ("o1-mini", "other"),
            ("GPT-4O", "other"),
            ("", "other"),
        ] {
            assert_eq!(label(&models, Some(model)), want, "{model}");
        }
        assert_eq!(label(&models, None), "other");
        assert_eq!(label(&[], Some("gpt-4o")), "other");
    }

    #[test]
    fn an_exact_entry_wins_over_a_dated_match() {
        let models = list(&["gpt-4o", "gpt-4o-2024-08-06"]);
        assert_eq!(
            label(&models, Some("gpt-4o-2024-08-06")),
            "gpt-4o-2024-08-06"
        );
        assert_eq!(label(&models, Some("gpt-4o-2024-11-20")), "gpt-4o");
        assert_eq!(label(&models, Some("gpt-4o")), "gpt-4o");
    }
}
