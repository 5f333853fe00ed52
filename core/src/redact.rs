//! Redaction of secret values from text shown to people: previews, logs, errors and the
//! response excerpts kept in the store.

use std::borrow::Cow;

/// Replaces every known secret value in a text with `***`.
///
/// Secrets shorter than [`Redactor::MIN_LEN`] characters are not searched for: masking every
/// `1` in a log would hide everything and protect nothing. Such short values are still masked
/// wherever they are shown as a field, since fields carry their own secret flag.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// The shortest secret searched for in free text.
    pub const MIN_LEN: usize = 4;

    /// Remembers a secret value.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() >= Self::MIN_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The text with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_of_every_secret() {
        let mut r = Redactor::default();
        r.add("tok-123456");
        r.add("pw-abc");
        let text = "url=https://x/?t=tok-123456 auth pw-abc again tok-123456";
        assert_eq!(r.redact(text), "url=https://x/?t=*** auth *** again ***");
    }

    #[test]
    fn ignores_secrets_too_short_to_search_for() {
        let mut r = Redactor::default();
        r.add("1");
        assert_eq!(r.redact("a1b1"), "a1b1");
    }
}
