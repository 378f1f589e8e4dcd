//! Certificates made at test time (rcgen) and TLS clients for the tests: a CA, a server
//! certificate for `localhost` / `127.0.0.1`, a client certificate, all written as PEM files to
//! a temporary directory that strata and redis-server read.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and the certificates it signed, as files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A CA named `name`, a server certificate for `localhost` and `127.0.0.1` and a client
    /// certificate, signed by it.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().unwrap();
        let ca = CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let pki = Pki { dir, ca };
        pki.write("ca.crt", &pki.ca.pem());
        pki.renew_server();
        pki.leaf("client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        pki
    }

    /// Writes a new `server.crt` / `server.key` (a new key: it differs from the one before).
    pub fn renew_server(&self) {
        self.leaf(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
    }

    /// Signs `<name>.crt` / `<name>.key` with the CA, with a new key.
    fn leaf(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.write(&format!("{name}.crt"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn write(&self, file: &str, pem: &str) {
        std::fs::write(self.path(file), pem).expect("write PEM file");
    }

    /// The path of one of the files (`ca.crt`, `server.crt`, `server.key`, `client.crt`,
    /// `client.key`).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `path(file)` as a string for YAML and command lines.
    pub fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// A rustls client trusting this CA, presenting the client certificate when `with_cert`.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        self.client_config_versions(with_cert, rustls::DEFAULT_VERSIONS)
    }

    /// As [`Pki::client_config`], offering only `versions`.
    pub fn client_config_versions(
        &self,
        with_cert: bool,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path("ca.crt")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain = CertificateDer::pem_file_iter(self.path("client.crt"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}
