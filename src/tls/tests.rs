#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use super::*;

/// A CA and a server certificate for `localhost` (a DNS name) signed by it, as PEM files.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    // A key that belongs to no certificate here.
    let stray = KeyPair::generate().unwrap();
    std::fs::write(dir.join("stray.key"), stray.serialize_pem()).unwrap();
}

fn server_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join("server.crt"), dir.join("server.key"))
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let (cert, key) = server_files(dir.path());
    let missing = dir.path().join("nope.crt");
    let files = |cert: &'_ Path, key: &'_ Path| {
        ServerTls::new(&ServerFiles {
            cert,
            key,
            client_ca: None,
            min_version: MinVersion::Tls12,
        })
    };
    let e = files(&missing, &key).unwrap_err().to_string();
    assert!(e.contains("nope.crt") && e.contains("cannot read"), "{e}");
    // A key file where a certificate is expected: no certificate in it.
    let e = files(&key, &key).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
    // A key that is not the certificate's.
    assert!(files(&cert, &dir.path().join("stray.key")).is_err());
    assert!(files(&cert, &key).is_ok());
    let e = NodeTls::new(
        &NodeFiles {
            ca: Some(&dir.path().join("ca.crt")),
            server_name: Some("not a name!"),
            ..NodeFiles::default()
        },
        "127.0.0.1",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("invalid server name"), "{e}");
}

#[tokio::test]
async fn a_node_client_and_the_listener_agree_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let (cert, key) = server_files(dir.path());
    let server = ServerTls::new(&ServerFiles {
        cert: &cert,
        key: &key,
        client_ca: None,
        min_version: MinVersion::Tls13,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let mut served = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut tls) = server.accept(tcp).await {
                use tokio::io::AsyncWriteExt;
                tls.write_all(b"+OK\r\n").await.unwrap();
                tls.flush().await.unwrap();
                served += 1;
            }
        }
        served
    });
    let ca = dir.path().join("ca.crt");
    for (name, ok) in [
        (None, true),
        (Some("localhost"), true),
        (Some("other"), false),
    ] {
        // The address's host (127.0.0.1) is not in the certificate: only "localhost" is.
        let files = NodeFiles {
            ca: Some(&ca),
            server_name: name,
            ..NodeFiles::default()
        };
        let client = NodeTls::new(&files, "localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = match client.connect(tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                assert!(!ok, "{name:?}: {e}");
                assert!(e.to_string().contains("not valid for name"), "{e}");
                continue;
            }
        };
        assert!(ok, "{name:?} connected");
        use tokio::io::AsyncReadExt;
        let mut reply = [0u8; 5];
        tls.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"+OK\r\n");
    }
    // Without the CA: the system's store does not know it.
    let client = NodeTls::new(
        &NodeFiles {
            insecure_skip_verify: false,
            ..NodeFiles::default()
        },
        "localhost",
    );
    if let Ok(client) = client {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let Err(e) = client.connect(tcp).await else {
            panic!("connected without knowing the issuer")
        };
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }
    // insecure_skip_verify: anything goes.
    let client = NodeTls::new(
        &NodeFiles {
            insecure_skip_verify: true,
            ..NodeFiles::default()
        },
        "some.other.name",
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(client.connect(tcp).await.is_ok());
    accepting.abort();
}
