//! The TLS sections: `tls` (a listener for clients, beside the plain `listen`) and the node
//! side, `backend.tls` for every node with `nodes[].tls` overriding it field by field. The
//! files are read when the configuration is validated (`strata check` refuses a bad certificate;
//! a reload reads them again, so a renewed certificate applies to the connections made after it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tls::{MinVersion, NodeFiles, NodeTls, ServerFiles, ServerTls};

/// The TLS listener (`tls` in config.yaml). Relative paths are relative to the directory strata
/// runs in, as Redis's `tls-cert-file` are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address TLS clients connect to (`redis-cli --tls -p ...`). Required.
    pub listen: SocketAddr,
    /// Certificate chain strata presents (PEM, leaf first). Required.
    pub cert: PathBuf,
    /// Its private key (PEM). Required.
    pub key: PathBuf,
    /// Certificate authorities (PEM) whose signature a client's certificate must carry; set:
    /// clients must present one (mutual TLS). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Oldest protocol accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: MinVersion,
    /// Longest a client may take to complete the handshake before it is disconnected. Default
    /// `10s`.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

/// TLS to nodes: `backend.tls` for all of them, a node's `tls` overriding it field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeTlsConfig {
    /// Whether to use TLS; default true wherever a `tls` section is given (`false` in a node's
    /// section turns it off for that node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Certificate authorities (PEM) to verify the nodes' certificates with. Default: the
    /// system's trust store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// strata's certificate (PEM), for nodes that require one (`tls-auth-clients yes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The key of `cert` (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The name the node's certificate must be valid for. Default: the host of the node's
    /// address (a DNS name, or an IP address matched against the certificate's IP entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate the node presents: encrypted, but not protected against
    /// impersonation. Default false; strata logs a warning for each node set up so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

impl TlsConfig {
    /// Reads the files and builds the listener's acceptor.
    pub fn build(&self) -> Result<ServerTls, String> {
        ServerTls::new(&ServerFiles {
            cert: &self.cert,
            key: &self.key,
            client_ca: self.client_ca.as_deref(),
            min_version: self.min_version,
        })
        .map_err(|e| format!("tls: {e}"))
    }
}

/// Builds a node's TLS client from the global section and its own, field by field; `None`
/// when TLS is off for it. `what` names the node in errors, `addr` gives the default server
/// name.
pub fn node_tls(
    what: &str,
    addr: &str,
    global: Option<&NodeTlsConfig>,
    node: Option<&NodeTlsConfig>,
) -> Result<Option<Arc<NodeTls>>, String> {
    let field = |f: fn(&NodeTlsConfig) -> Option<&PathBuf>| -> Option<&Path> {
        node.and_then(f)
            .or_else(|| global.and_then(f))
            .map(PathBuf::as_path)
    };
    let enabled = node
        .and_then(|n| n.enabled)
        .or_else(|| global.and_then(|g| g.enabled))
        .unwrap_or(global.is_some() || node.is_some());
    if !enabled {
        return Ok(None);
    }
    let cert = field(|c| c.cert.as_ref());
    let key = field(|c| c.key.as_ref());
    if cert.is_some() != key.is_some() {
        return Err(format!(
            "{what}: tls.cert and tls.key go together (one is set without the other)"
        ));
    }
    let server_name = node
        .and_then(|n| n.server_name.as_deref())
        .or_else(|| global.and_then(|g| g.server_name.as_deref()));
    let insecure = node
        .and_then(|n| n.insecure_skip_verify)
        .or_else(|| global.and_then(|g| g.insecure_skip_verify))
        .unwrap_or(false);
    let host = super::split_host_port(addr).map_or(addr, |(host, _)| host);
    let files = NodeFiles {
        ca: field(|c| c.ca.as_ref()),
        cert,
        key,
        server_name,
        insecure_skip_verify: insecure,
    };
    NodeTls::new(&files, host)
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| format!("{what}: tls: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Config;

    fn parse(yaml: &str) -> Result<crate::config::Settings, String> {
        Config::parse(yaml, "test").map_err(|e| e.to_string())
    }

    #[test]
    fn node_sections_merge_field_by_field_and_bad_ones_are_named() {
        // Global TLS with insecure_skip_verify (no files to read); node b turns it off.
        let s = parse(
            "backend: {tls: {insecure_skip_verify: true, server_name: redis.internal}}\n\
             nodes:\n  - {id: a, addr: '127.0.0.1:1'}\n  - {id: b, addr: '127.0.0.1:2', tls: {enabled: false}}\n",
        )
        .unwrap();
        assert!(s.node_tls.get("a").is_some_and(|t| t.insecure));
        assert!(!s.node_tls.contains_key("b"));
        // A node added later (not in the file) gets the global section.
        assert!(s.node_tls_for("c", "127.0.0.1:3").unwrap().is_some());
        assert!(s.node_tls_for("b", "127.0.0.1:2").unwrap().is_none());

        let e = parse(
            "nodes:\n  - {id: a, addr: '127.0.0.1:1', tls: {insecure_skip_verify: true, cert: x.crt}}\n",
        )
        .unwrap_err();
        assert!(
            e.contains("nodes[0] (a)") && e.contains("tls.cert and tls.key go together"),
            "{e}"
        );
        let e = parse("nodes:\n  - {id: a, addr: '127.0.0.1:1', tls: {ca: /no/such/ca.pem}}\n")
            .unwrap_err();
        assert!(
            e.contains("nodes[0] (a): tls: /no/such/ca.pem: cannot read"),
            "{e}"
        );
        let e = parse(
            "tls: {listen: '127.0.0.1:7000', cert: /no/such.crt, key: /no/such.key}\nnodes:\n  - {id: a, addr: '127.0.0.1:1'}\n",
        )
        .unwrap_err();
        assert!(e.contains("tls: /no/such.crt: cannot read"), "{e}");
        let e = parse(
            "tls: {listen: '127.0.0.1:7000', cert: a, key: b, min_version: '1.1'}\nnodes:\n  - {id: a, addr: '127.0.0.1:1'}\n",
        )
        .unwrap_err();
        assert!(e.contains("min_version"), "{e}");
    }
}
