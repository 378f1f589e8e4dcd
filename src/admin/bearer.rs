//! Bearer tokens on the admin endpoint (RFC 6750): reading `Authorization: Bearer <token>` and
//! the refusals with their `WWW-Authenticate` challenge. Which token is right, which paths need
//! one, and what to count and log are the handler's: this module knows HTTP, not strata's
//! configuration.

use hyper::header::{HeaderMap, AUTHORIZATION};

use super::HttpResponse;

/// What a request's `Authorization` header offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic ...`): no bearer token was
    /// offered.
    None,
    /// `Bearer <token>` (the scheme in any case, RFC 7235), the token's bytes.
    Bearer(&'a [u8]),
    /// Several `Authorization` headers, or `Bearer` followed by no token, by more than one, or
    /// by bytes a token cannot hold (controls, non-ASCII).
    Malformed,
}

/// Why a request's credentials were refused, with RFC 6750 §3.1's answer to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token: `401` with the bare challenge (no error code, as §3.1 asks for a
    /// client that may not know authentication is needed).
    Missing,
    /// A well-formed token that is not the right one: `401`, `error="invalid_token"`.
    InvalidToken,
    /// Malformed credentials: `400`, `error="invalid_request"`.
    InvalidRequest,
}

impl Refusal {
    /// The response: status, `WWW-Authenticate` challenge (realm `strata`) and a short text
    /// body. Nothing of what the client sent is repeated.
    pub fn response(self) -> HttpResponse {
        let (status, challenge, body) = match self {
            Refusal::Missing => (
                401,
                "Bearer realm=\"strata\"",
                "unauthorized: send Authorization: Bearer <token>\n",
            ),
            Refusal::InvalidToken => (
                401,
                "Bearer realm=\"strata\", error=\"invalid_token\"",
                "unauthorized: invalid token\n",
            ),
            Refusal::InvalidRequest => (
                400,
                "Bearer realm=\"strata\", error=\"invalid_request\"",
                "bad request: malformed Authorization header\n",
            ),
        };
        let mut response = HttpResponse::text(status, body);
        response.www_authenticate = Some(challenge);
        response
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "no bearer token",
            Refusal::InvalidToken => "invalid bearer token",
            Refusal::InvalidRequest => "malformed Authorization header",
        })
    }
}

impl Credentials<'_> {
    /// `Ok` when a bearer token was offered and `accepts` takes it, else the refusal.
    pub fn check(&self, accepts: impl FnOnce(&[u8]) -> bool) -> Result<(), Refusal> {
        match self {
            Credentials::None => Err(Refusal::Missing),
            Credentials::Malformed => Err(Refusal::InvalidRequest),
            Credentials::Bearer(token) if accepts(token) => Ok(()),
            Credentials::Bearer(_) => Err(Refusal::InvalidToken),
        }
    }
}

/// Reads the `Authorization` header(s) of a request. A token is one run of visible ASCII
/// (RFC 6750's `b64token` and more: what to accept is the caller's check, not the syntax's).
pub(super) fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::None;
    };
    if values.next().is_some() {
        return Credentials::Malformed;
    }
    let value = value.as_bytes().trim_ascii();
    let mut parts = value.splitn(2, |&b| b == b' ');
    let scheme = parts.next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Credentials::None;
    }
    let token = parts.next().unwrap_or_default().trim_ascii();
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Credentials::Malformed;
    }
    Credentials::Bearer(token)
}
