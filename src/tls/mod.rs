//! TLS on both sides, with rustls (ring as the crypto provider, no OpenSSL): the server side
//! clients connect to (`tls.listen`), and the client side strata opens to its nodes
//! (`backend.tls`, `nodes[].tls`). This module builds the two from file paths and options; the
//! config validates with it (so a bad certificate is refused by `strata check`, and a reload
//! re-reads the files), the server accepts with [`ServerTls`] and the connect path dials with
//! [`NodeTls`].

mod files;
mod insecure;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use serde::{Deserialize, Serialize};

pub use tokio_rustls::{client::TlsStream as NodeTlsStream, server::TlsStream as ClientTlsStream};

/// Why a TLS set-up could not be built. The texts name the file and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: certificate not usable as a trust anchor: {source}")]
    BadAnchor {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("no trusted certificate authority: {0}")]
    NoRoots(String),
    #[error("invalid server name {name:?}: {reason}")]
    ServerName { name: String, reason: String },
    #[error("{0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the combination (a key that does not match its certificate ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The oldest protocol version accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (Redis's default `tls-protocols`).
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

impl MinVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => BOTH,
            MinVersion::Tls13 => ONLY_13,
        }
    }
}

/// What the TLS listener presents and asks of clients (`tls` in config.yaml).
#[derive(Debug, Clone)]
pub struct ServerFiles<'a> {
    /// The certificate chain (PEM), leaf first.
    pub cert: &'a Path,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// When set, clients must present a certificate signed by one of these (mutual TLS).
    pub client_ca: Option<&'a Path>,
    pub min_version: MinVersion,
}

/// The TLS listener's acceptor, built from [`ServerFiles`].
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Whether clients must present a certificate.
    pub mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the acceptor.
    pub fn new(files: &ServerFiles<'_>) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let chain = files::certificates(files.cert)?;
        let key = files::private_key(files.key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(files.min_version.versions())?;
        let config = match files.client_ca {
            Some(ca) => {
                let roots = files::roots(ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        }
        .with_single_cert(chain, key)?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mutual: files.client_ca.is_some(),
        })
    }

    /// The TLS handshake with a client that just connected.
    pub async fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<ClientTlsStream<tokio::net::TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// How strata reaches a node over TLS (`backend.tls` merged with the node's `tls`).
#[derive(Debug, Clone, Default)]
pub struct NodeFiles<'a> {
    /// Certificate authorities to trust (PEM); none: the system's store.
    pub ca: Option<&'a Path>,
    /// strata's own certificate and key, for nodes that ask for one (`tls-auth-clients yes`).
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    /// The name the node's certificate must carry; none: the host of its address.
    pub server_name: Option<&'a str>,
    /// Accept any certificate (no verification at all).
    pub insecure_skip_verify: bool,
}

/// A node's TLS client: the connector and the name checked against its certificate.
#[derive(Clone)]
pub struct NodeTls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    /// Whether the node's certificate goes unverified.
    pub insecure: bool,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads the files and builds the client of a node whose address has host `host`.
    pub fn new(files: &NodeFiles<'_>, host: &str) -> Result<NodeTls, TlsError> {
        let provider = provider();
        let name = files.server_name.unwrap_or(host);
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|e| TlsError::ServerName {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(MinVersion::Tls12.versions())?;
        let builder = if files.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::AnyCertificate::new(provider)))
        } else {
            let roots = match files.ca {
                Some(ca) => files::roots(ca)?,
                None => files::system_roots()?,
            };
            builder.with_root_certificates(roots)
        };
        let config = match (files.cert, files.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(files::certificates(cert)?, files::private_key(key)?)?,
            _ => builder.with_no_client_auth(),
        };
        Ok(NodeTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            insecure: files.insecure_skip_verify,
        })
    }

    /// The TLS handshake on a connection just opened to the node.
    pub async fn connect(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<NodeTlsStream<tokio::net::TcpStream>> {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// ring, named explicitly rather than installed as the process default: nothing depends on
/// which provider another crate might install first.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
