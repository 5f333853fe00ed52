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

    /// Remembers a secret value, as written and in the forms a target may echo it back in:
    /// URL-encoded (`+` or `%20` for spaces) and escaped inside a JSON string.
    pub fn add(&mut self, secret: &str) {
        let json = serde_json::to_string(secret).expect("a string serializes");
        let forms = [
            secret.to_owned(),
            form_encode(secret),
            form_encode(secret).replace('+', "%20"),
            json[1..json.len() - 1].to_owned(),
        ];
        for form in forms {
            if form.chars().count() >= Self::MIN_LEN && !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// The text with every secret masked. A text cut short (ending in `…`) that ends with the
    /// start of a secret has that start masked too.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        let cut = out
            .strip_suffix('…')
            .and_then(|body| Some((body, self.cut_secret(body)?)));
        match cut {
            Some((body, start)) => Cow::Owned(format!("{}***…", &body[..start])),
            None => out,
        }
    }

    /// Where the first characters of a secret (even one) end `text`, if they do. Masking a
    /// little too much at a cut is the safe mistake.
    fn cut_secret(&self, text: &str) -> Option<usize> {
        self.secrets
            .iter()
            .filter_map(|secret| {
                let longest = text.len().min(secret.len());
                (1..=longest)
                    .rev()
                    .filter(|n| {
                        secret.is_char_boundary(*n) && text.is_char_boundary(text.len() - n)
                    })
                    .find(|n| text.ends_with(&secret[..*n]))
                    .map(|n| text.len() - n)
            })
            .min()
    }
}

/// URL-encodes like an HTML form: letters, digits and `*-._` stay, a space becomes `+`.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
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
    fn masks_the_encoded_forms_a_target_echoes_back() {
        let mut r = Redactor::default();
        r.add("keyv \"al\\ue/+&=ü x");
        let json = r#"{"key":"keyv \"al\\ue/+&=ü x"}"#;
        assert_eq!(r.redact(json), r#"{"key":"***"}"#);
        assert_eq!(
            r.redact("key=keyv+%22al%5Cue%2F%2B%26%3D%C3%BC+x&o=1"),
            "key=***&o=1"
        );
    }

    #[test]
    fn masks_the_start_of_a_secret_cut_off_at_the_end() {
        let mut r = Redactor::default();
        r.add("sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        assert_eq!(
            r.redact("bad request &api_key=sk_live_4eC39H…"),
            "bad request &api_key=***…"
        );
        assert_eq!(r.redact("no secret here…"), "no secret here…");
        assert_eq!(
            r.redact("cut at the first letter s…"),
            "cut at the first letter ***…"
        );
    }

    #[test]
    fn ignores_secrets_too_short_to_search_for() {
        let mut r = Redactor::default();
        r.add("1");
        assert_eq!(r.redact("a1b1"), "a1b1");
    }
}
