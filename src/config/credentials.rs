//! Credentials strata presents to its nodes (`backend.username` / `backend.password`, and per
//! node overrides in `nodes[]`). The password is a [`Secret`]: it reads like a string from
//! YAML, but every way of showing it (`strata check`'s YAML, `Debug` in logs) prints
//! `<redacted>`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a password shows instead of itself.
pub const REDACTED: &str = "<redacted>";

/// A string never shown: serialized and debug-printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it (the node connect path).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The credentials of one node, resolved from the global ones and the node's overrides:
/// `AUTH <username> <password>` when a username is set, else `AUTH <password>` (Redis's
/// `default` user, as `requirepass` sets it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Secret,
}

/// Resolves a node's credentials, field by field: the node's `username` / `password` when
/// set, else the global ones. `Err` when a username would be sent without a password, or a
/// value is empty; `what` names the node in the message.
pub fn resolve(
    what: &str,
    global: (Option<&String>, Option<&Secret>),
    node: (Option<&String>, Option<&Secret>),
) -> Result<Option<Credentials>, String> {
    if node.0.is_some_and(|u| u.is_empty()) || global.0.is_some_and(|u| u.is_empty()) {
        return Err(format!("{what}: username must not be empty"));
    }
    if node.1.is_some_and(|p| p.0.is_empty()) || global.1.is_some_and(|p| p.0.is_empty()) {
        return Err(format!("{what}: password must not be empty"));
    }
    let username = node.0.or(global.0).cloned();
    match node.1.or(global.1) {
        Some(password) => Ok(Some(Credentials {
            username,
            password: password.clone(),
        })),
        None if username.is_some() => Err(format!(
            "{what}: username {:?} is set without a password (set backend.password or the node's password)",
            username.unwrap_or_default()
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_yaml::to_string(&s).unwrap().trim(), REDACTED);
        let c = Credentials {
            username: Some("u".into()),
            password: s,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn node_fields_override_global_ones() {
        let (gu, gp) = (String::from("app"), Secret::new("g"));
        let np = Secret::new("n");
        let c = resolve("n", (Some(&gu), Some(&gp)), (None, Some(&np)))
            .unwrap()
            .unwrap();
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.expose(), "n");
        assert_eq!(resolve("n", (None, None), (None, None)).unwrap(), None);
        let err = resolve("nodes[0] (a)", (Some(&gu), None), (None, None)).unwrap_err();
        assert!(err.contains("without a password"), "{err}");
        let empty = Secret::new("");
        let err = resolve("x", (None, Some(&empty)), (None, None)).unwrap_err();
        assert!(err.contains("password must not be empty"), "{err}");
    }
}
