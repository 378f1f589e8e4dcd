//! `admin_listen`: an IP address and port, or a bare port, which binds loopback. An address
//! that leaves the host out (`:9380`, as Go programs write "every interface") or names one
//! (`localhost:9380`) is refused rather than guessed at: the endpoint is reachable from other
//! machines only when the file says `0.0.0.0:<port>` (or another address) in so many words.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use serde::de::{Error, Visitor};
use serde::Deserializer;

/// Deserializes `admin_listen` (see the module doc); `null` is none. The value is read by a
/// visitor, so that serde_yaml reports a refusal with the key, line and column.
pub fn admin_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_any(AdminListen)
}

struct AdminListen;

impl<'de> Visitor<'de> for AdminListen {
    type Value = Option<SocketAddr>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<ip>:<port> or a port")
    }

    fn visit_u64<E: Error>(self, port: u64) -> Result<Self::Value, E> {
        parse(&port.to_string()).map(Some).map_err(E::custom)
    }

    fn visit_i64<E: Error>(self, port: i64) -> Result<Self::Value, E> {
        parse(&port.to_string()).map(Some).map_err(E::custom)
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text).map(Some).map_err(E::custom)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn parse(text: &str) -> Result<SocketAddr, String> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(port) => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            Err(_) => Err(format!("port {text} is not between 0 and 65535")),
        };
    }
    text.parse().map_err(|_| {
        format!(
            "expected <ip>:<port> (127.0.0.1:9380; 0.0.0.0:9380 for every interface) or a bare port for 127.0.0.1 (9380), got {text:?}"
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "admin_listen")]
        admin_listen: Option<SocketAddr>,
    }

    fn read(yaml: &str) -> Result<Option<SocketAddr>, String> {
        serde_yaml::from_str::<T>(yaml)
            .map(|t| t.admin_listen)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bare_port_binds_loopback_and_a_missing_host_is_refused() {
        let loopback = Some("127.0.0.1:9380".parse().unwrap());
        assert_eq!(read("admin_listen: 9380").unwrap(), loopback);
        assert_eq!(read("admin_listen: '9380'").unwrap(), loopback);
        assert_eq!(
            read("admin_listen: 0.0.0.0:9380").unwrap(),
            Some("0.0.0.0:9380".parse().unwrap())
        );
        assert_eq!(
            read("admin_listen: '[::1]:9380'").unwrap(),
            Some("[::1]:9380".parse().unwrap())
        );
        assert_eq!(read("admin_listen: null").unwrap(), None);
        assert_eq!(read("{}").unwrap(), None);
        for bad in [
            ":9380",
            "localhost:9380",
            "*:9380",
            "70000",
            "-1",
            "0.0.0.0",
        ] {
            let e = read(&format!("admin_listen: '{bad}'")).unwrap_err();
            assert!(
                e.starts_with("admin_listen: ")
                    && (e.contains("expected <ip>:<port>") || e.contains("not between")),
                "{bad}: {e}"
            );
        }
    }
}
