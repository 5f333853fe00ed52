//! Bearer-token authentication of the ingest API.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, error_body};

/// Lets a request through when it carries one of the configured tokens, or when none is
/// configured (only allowed on a loopback address). Tokens are compared in constant time.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let tokens = &state.config.server.tokens;
    if tokens.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim);
    let Some(given) = given else {
        let body = error_body("missing `Authorization: Bearer TOKEN` header");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response();
    };
    // Check every token, so the time taken does not tell which one came close.
    let matched = tokens.iter().fold(false, |found, token| {
        found | same(given.as_bytes(), token.as_bytes())
    });
    if !matched {
        let body = error_body("the bearer token is not one of the configured tokens");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response();
    }
    next.run(request).await
}

/// Compares two byte strings in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn compares_whole_tokens() {
        assert!(same(b"secret-token-1234", b"secret-token-1234"));
        assert!(!same(b"secret-token-1234", b"secret-token-1235"));
        assert!(!same(b"secret", b"secret-token-1234"));
    }
}
