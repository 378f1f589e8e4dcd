//! The `security` section: dangerous commands, client passwords (`requirepass`) and named users
//! with their permissions (`users`). Passwords are stored as the SHA-256 of the password, in hex,
//! as Redis's ACL stores them: the file can be read without revealing them. The rules are
//! compiled for requests in `acl`.

use serde::{Deserialize, Serialize};

/// Guards for commands that can destroy data, and who may connect and do what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Allow FLUSHDB, FLUSHALL, KEYS and CONFIG SET through the proxy. Default false.
    pub allow_dangerous_commands: bool,
    /// SHA-256 (hex) of the password of the `default` user. Set: clients must `AUTH
    /// <password>` (or `HELLO 3 AUTH default <password>`) before anything else. Default none:
    /// no password (unless `users` configures `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirepass: Option<String>,
    /// Named users (`AUTH <name> <password>`), with what each may run and touch. A user named
    /// `default` replaces the default user (then `requirepass` must not be set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
    /// SHA-256 (hex) of the bearer token the HTTP admin endpoint (`admin_listen`) asks for.
    /// Set: every path but `/healthz` needs `Authorization: Bearer <token>`. Default none: the
    /// endpoint is open to whoever can reach it. The name says "sha256" because tokens are often
    /// 64 hex digits themselves (`openssl rand -hex 32`): the token does not go here, its hash
    /// does. Reloadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_sha256: Option<String>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Letters, digits, `_`, `-`, `.` and `@`; 1 to 64.
    pub name: String,
    /// SHA-256 (hex) of each password the user may authenticate with (several while a password
    /// is rotated). Empty: the user cannot authenticate (unless it is `default`, which then needs
    /// no password).
    #[serde(default)]
    pub passwords: Vec<String>,
    /// A disabled user cannot authenticate; clients already authenticated as it are refused at
    /// their next command. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Command categories the user may run: `read`, `write`, `admin`, `dangerous`, or `all`.
    /// Connection and introspection commands (PING, HELLO, INFO, CLIENT, COMMAND, ...) are always
    /// allowed. Default none, as for a new Redis ACL user.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Glob patterns (Redis's) of the keys and pub/sub channels the user may touch; `*` for all.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Layers whose keys the user may touch (each layer's prefix; `default` is every key).
    #[serde(default)]
    pub layers: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The categories a user's `commands` may name.
pub const CATEGORIES: &[&str] = &["read", "write", "admin", "dangerous", "all"];

/// True for 64 hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_hash(at: &str, value: &str) -> Result<(), String> {
    check_secret_hash(at, value, "password")
}

/// Refuses anything but a SHA-256 in hex, naming the shell command that prints the hash of a
/// `what` (password, token).
fn check_secret_hash(at: &str, value: &str, what: &str) -> Result<(), String> {
    if is_sha256_hex(value) {
        Ok(())
    } else {
        Err(format!(
            "{at}: a {what} is stored as its SHA-256 in hex (64 hex digits), not as the {what} itself; print it with: printf '%s' 'the-{what}' | sha256sum"
        ))
    }
}

impl SecurityConfig {
    /// Checks the section against the configured layer names.
    pub fn validate(&self, layer_names: &[&str]) -> Result<(), String> {
        if let Some(pass) = &self.requirepass {
            check_hash("security.requirepass", pass)?;
        }
        if let Some(token) = &self.admin_token_sha256 {
            check_secret_hash("security.admin_token_sha256", token, "token")?;
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("security.users[{i}]");
            let valid_name = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
            if !valid_name {
                return Err(format!(
                    "{at}.name: letters, digits, '_', '-', '.' and '@' only (1 to 64), got {:?}",
                    u.name
                ));
            }
            if seen.contains(&u.name.as_str()) {
                return Err(format!("{at}.name: user '{}' is defined twice", u.name));
            }
            seen.push(&u.name);
            if u.name == "default" && self.requirepass.is_some() {
                return Err(format!(
                    "{at}: the default user is configured here and by security.requirepass; keep one"
                ));
            }
            for (j, p) in u.passwords.iter().enumerate() {
                check_hash(&format!("{at}.passwords[{j}]"), p)?;
            }
            for c in &u.commands {
                if !CATEGORIES.contains(&c.as_str()) {
                    return Err(format!(
                        "{at}.commands: unknown category '{c}' (one of: {})",
                        CATEGORIES.join(", ")
                    ));
                }
            }
            for k in &u.keys {
                if k.is_empty() {
                    return Err(format!("{at}.keys: an empty pattern matches no key"));
                }
            }
            for l in &u.layers {
                if !layer_names.contains(&l.as_str()) {
                    return Err(format!(
                        "{at}.layers: no layer named '{l}' (layers: {})",
                        layer_names.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    fn user(name: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            passwords: vec![HASH.into()],
            enabled: true,
            commands: vec!["read".into()],
            keys: vec!["meta:*".into()],
            layers: vec![],
        }
    }

    #[test]
    fn a_plain_password_is_refused_with_the_command_that_hashes_it() {
        let s = SecurityConfig {
            requirepass: Some("hunter2".into()),
            ..SecurityConfig::default()
        };
        let e = s.validate(&[]).unwrap_err();
        assert!(e.contains("security.requirepass"), "{e}");
        assert!(e.contains("sha256sum"), "{e}");
        let mut u = user("dash");
        u.passwords = vec!["secret".into()];
        let s = SecurityConfig {
            users: vec![u],
            ..SecurityConfig::default()
        };
        let e = s.validate(&[]).unwrap_err();
        assert!(e.contains("security.users[0].passwords[0]"), "{e}");
    }

    #[test]
    fn a_plain_admin_token_is_refused_with_the_command_that_hashes_it() {
        let s = SecurityConfig {
            admin_token_sha256: Some("my-scrape-token".into()),
            ..SecurityConfig::default()
        };
        let e = s.validate(&[]).unwrap_err();
        assert!(e.contains("security.admin_token_sha256"), "{e}");
        assert!(
            e.contains("a token is stored as its SHA-256")
                && e.contains("printf '%s' 'the-token' | sha256sum"),
            "{e}"
        );
        let s = SecurityConfig {
            admin_token_sha256: Some(HASH.to_uppercase()),
            ..SecurityConfig::default()
        };
        assert_eq!(s.validate(&[]), Ok(()));
    }

    #[test]
    fn users_are_checked() {
        let ok = SecurityConfig {
            requirepass: Some(HASH.into()),
            users: vec![user("router")],
            ..SecurityConfig::default()
        };
        assert_eq!(ok.validate(&["meta"]), Ok(()));
        let mut bad = ok.clone();
        bad.users.push(user("router"));
        assert!(bad.validate(&[]).unwrap_err().contains("defined twice"));
        let mut bad = ok.clone();
        bad.users[0].commands = vec!["everything".into()];
        assert!(bad.validate(&[]).unwrap_err().contains("unknown category"));
        let mut bad = ok.clone();
        bad.users[0].layers = vec!["nope".into()];
        assert!(bad
            .validate(&["meta"])
            .unwrap_err()
            .contains("no layer named"));
        let mut bad = ok.clone();
        bad.users[0].name = "default".into();
        assert!(bad.validate(&[]).unwrap_err().contains("keep one"));
        let mut bad = ok;
        bad.users[0].name = "a b".into();
        assert!(bad.validate(&[]).unwrap_err().contains(".name"));
    }
}
