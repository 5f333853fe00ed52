//! What the receiver recorded of one request.

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// The method, upper case as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, without the `?`; empty when there was none.
    pub query: String,
    /// Every header in arrival order, names in lower case, values as lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The first value of a header, the name matched ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string decoded into (name, value) pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        decode_pairs(&self.query)
    }

    /// The body decoded as `application/x-www-form-urlencoded` pairs, in order.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        decode_pairs(&self.body_text())
    }

    /// The body as lossy UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Decodes a URL-encoded query or form body into (name, value) pairs, in order.
pub fn decode_pairs(text: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_order() {
        let pairs = decode_pairs("b=1+2&a=%26%3D&b=%F0%9F%8E%89");
        let expected = [("b", "1 2"), ("a", "&="), ("b", "🎉")];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
    }
}
