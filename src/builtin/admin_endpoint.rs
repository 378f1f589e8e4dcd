//! What the admin HTTP endpoint (`admin_listen`, served by `crate::admin`) answers:
//! `/metrics` and `/healthz`, with `security.admin_token_sha256` checked first.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::admin::{AdminRequest, HttpResponse, Refusal};
use crate::control::Control;

/// Admin HTTP requests served at once; more wait in the backlog.
pub const ADMIN_CONNECTIONS: usize = 16;

/// What the admin endpoint answers: `/metrics` and `/healthz`, the token checked first.
pub fn handler(control: Arc<Control>) -> crate::admin::Handler {
    let registry = crate::builtin::metrics::registry(control.clone());
    Arc::new(move |request: &AdminRequest<'_>| {
        if let Some(refusal) = admin_refusal(&control, request) {
            return refusal;
        }
        match request.path {
            "/metrics" => HttpResponse::new(
                200,
                crate::builtin::metrics::CONTENT_TYPE,
                crate::builtin::metrics::render(&registry),
            ),
            "/healthz" => health(&control),
            _ => HttpResponse::text(404, "not found: try /metrics or /healthz\n"),
        }
    })
}

/// With `security.admin_token_sha256` set, every path but `/healthz` (which load balancers
/// probe without credentials, and which tells only up or down) needs `Authorization: Bearer
/// <token>`: the refusal to send, or `None`. The token is looked up per request, so a reload
/// applies at once. Wrong or malformed credentials are counted and logged with the client's
/// address (never the token); a request without any is logged at debug level only.
fn admin_refusal(control: &Control, request: &AdminRequest<'_>) -> Option<HttpResponse> {
    if request.path == "/healthz" {
        return None;
    }
    let acl = control.live.load().acl.clone();
    if !acl.admin_token_required() {
        return None;
    }
    let refusal = request
        .credentials
        .check(|token| acl.admin_token_accepts(token))
        .err()?;
    if refusal == Refusal::Missing {
        tracing::debug!(client.addr = %request.peer, path = request.path, "admin endpoint: {refusal}");
    } else {
        control
            .stats
            .admin_denied_auth
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(client.addr = %request.peer, path = request.path, "admin endpoint: {refusal}");
    }
    Some(refusal.response())
}

/// `/healthz`: 200 `ok` when every node is up, 200 `degraded` naming the nodes that are not
/// (the keys of the others are served), 503 when no node is up (nothing can be served).
fn health(control: &Control) -> HttpResponse {
    if control.drain.is_draining() {
        // Load balancers should stop sending clients here.
        return HttpResponse::text(503, "draining: shutting down\n");
    }
    let view = control.live.load();
    let topology = &view.topology;
    // The ring's members and the cluster backends' primaries.
    let serving = topology.serving();
    let down: Vec<&str> = serving
        .iter()
        .filter_map(|&s| topology.node(s))
        .filter(|n| n.health.is_down())
        .map(|n| n.id.as_str())
        .collect();
    if down.is_empty() {
        HttpResponse::text(200, "ok\n")
    } else if down.len() < serving.len() {
        HttpResponse::text(200, format!("degraded: not up: {}\n", down.join(" ")))
    } else {
        HttpResponse::text(
            503,
            format!("unavailable: no node is up: {}\n", down.join(" ")),
        )
    }
}
