//! Standard Webhooks signatures: a receiver that holds the profile's signing secret can check
//! that a request came from this exporter and was not changed or replayed.
//!
//! Each signed request carries `webhook-id` (the delivery id, the same on every attempt),
//! `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`: `v1,` then the
//! base64 HMAC-SHA256, keyed with the decoded secret, of `{id}.{timestamp}.{body}` (an empty
//! body for a GET).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix Standard Webhooks secrets are written with.
const PREFIX: &str = "whsec_";

/// A decoded signing secret. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Reads a secret written as `whsec_` and base64 (the prefix is optional), of 24 to 64 bytes.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let encoded = secret.trim().strip_prefix(PREFIX).unwrap_or(secret.trim());
        let key = STANDARD.decode(encoded).map_err(|_| {
            "must be `whsec_` followed by base64, as Standard Webhooks secrets are".to_owned()
        })?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "must decode to 24 to 64 bytes, found {}",
                key.len()
            ));
        }
        Ok(SigningKey(key))
    }

    /// The three signature headers for one attempt.
    pub fn headers(&self, id: &str, timestamp: i64, body: &str) -> [(String, String); 3] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        [
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            ("webhook-signature".to_owned(), format!("v1,{signature}")),
        ]
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_id_timestamp_and_body() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let headers = key.headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            headers[2].1,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_base64_or_too_short() {
        assert!(SigningKey::parse("whsec_not base64!").is_err());
        assert!(
            SigningKey::parse("whsec_c2hvcnQ=")
                .unwrap_err()
                .contains("24 to 64 bytes")
        );
        assert!(
            !format!(
                "{:?}",
                SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            )
            .contains("MfKQ")
        );
    }
}
