//! Bearer credentials (RFC 6750): how the `Authorization` header is read, and the refusals as
//! a client receives them over HTTP.

use super::*;
use hyper::header::{HeaderMap, AUTHORIZATION};

const TOKEN: &str = "c2VjcmV0LXRva2Vu";

/// Like the server's: `/healthz` open, every other path behind the token; `/peer` answers the
/// client's address as the handler sees it.
fn token_handler() -> Handler {
    Arc::new(|request: &AdminRequest<'_>| {
        if request.path != "/healthz" {
            if let Err(refusal) = request.credentials.check(|t| t == TOKEN.as_bytes()) {
                return refusal.response();
            }
        }
        match request.path {
            "/peer" => HttpResponse::text(200, request.peer.ip().to_string()),
            "/healthz" => HttpResponse::text(200, "ok\n"),
            _ => HttpResponse::text(200, "strata_up 1\n"),
        }
    })
}

fn read(values: &[&[u8]]) -> Credentials<'static> {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
    }
    // Leaked so the borrowed credentials outlive the map: a test's few bytes.
    let headers: &'static HeaderMap = Box::leak(Box::new(headers));
    crate::admin::bearer::credentials(headers)
}

#[test]
fn authorization_headers_are_read_as_rfc_6750_bearer_credentials() {
    assert_eq!(read(&[]), Credentials::None);
    // Another scheme offers no bearer token.
    assert_eq!(read(&[b"Basic dXNlcjpwYXNz"]), Credentials::None);
    assert_eq!(read(&[b"Bearertoken"]), Credentials::None);
    // The scheme in any case; spaces around the token do not count.
    for v in [
        &b"Bearer abc-._~+/="[..],
        b"bearer abc-._~+/=",
        b"BEARER   abc-._~+/=  ",
    ] {
        assert_eq!(read(&[v]), Credentials::Bearer(b"abc-._~+/="), "{v:?}");
    }
    for v in [
        &[&b"Bearer"[..]][..],
        &[b"Bearer "],
        &[b"Bearer a b"],
        &[b"Bearer \xe9t\xe9"],
        &[b"Bearer a\tb"],
        &[b"Bearer a", b"Bearer a"],
    ] {
        assert_eq!(read(v), Credentials::Malformed, "{v:?}");
    }
    // One run of visible characters is a token as far as syntax goes; the check refuses it.
    assert_eq!(
        read(&[b"Bearer a,realm=x"]),
        Credentials::Bearer(b"a,realm=x")
    );
}

#[test]
fn the_check_maps_credentials_to_rfc_6750_refusals() {
    let right = |t: &[u8]| t == b"right";
    assert_eq!(Credentials::None.check(right), Err(Refusal::Missing));
    assert_eq!(
        Credentials::Malformed.check(right),
        Err(Refusal::InvalidRequest)
    );
    assert_eq!(
        Credentials::Bearer(b"wrong").check(right),
        Err(Refusal::InvalidToken)
    );
    assert_eq!(Credentials::Bearer(b"right").check(right), Ok(()));
}

#[test]
fn refusals_carry_their_challenge_and_never_the_token() {
    let admin = start(bind(), token_handler(), 4).unwrap();
    let ask = |auth: &str| {
        let raw = exchange(
            admin.addr(),
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes(),
        );
        assert!(!raw.contains("guess-"), "the token is echoed: {raw:?}");
        parse(&raw)
    };
    let r = ask("");
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"strata\"")
    );
    assert_eq!(r.header("Content-Type"), Some(TEXT_PLAIN));
    let r = ask("Authorization: Basic Z3Vlc3MtMQ==\r\n");
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"strata\"")
    );
    let r = ask("Authorization: Bearer guess-2\r\n");
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"strata\", error=\"invalid_token\"")
    );
    assert_eq!(r.body, "unauthorized: invalid token\n");
    let r = ask("Authorization: Bearer guess-3 guess-4\r\n");
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"strata\", error=\"invalid_request\"")
    );
    let r = ask(&format!("Authorization: Bearer {TOKEN}\r\n"));
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.header("WWW-Authenticate"), None);
    assert_eq!(r.body, "strata_up 1\n");
    // HEAD is refused the same way, without a body.
    let raw = exchange(admin.addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(raw.ends_with("\r\n\r\n"), "{raw:?}");
    assert_eq!(parse(&raw).status_line, "HTTP/1.1 401 Unauthorized");
    // What the handler leaves open needs nothing.
    let r = get(admin.addr(), "/healthz");
    assert_eq!(
        (r.status_line.as_str(), r.body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
}

#[test]
fn the_handler_sees_the_client_address() {
    let admin = start(bind(), token_handler(), 4).unwrap();
    let raw = exchange(
        admin.addr(),
        format!("GET /peer HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(parse(&raw).body, "127.0.0.1");
}
