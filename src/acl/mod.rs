//! Who may connect and what each user may run and touch, compiled from the `security` section
//! (`config::security`) for the per-request check: passwords (SHA-256, compared in constant
//! time), command categories, and key patterns or layers checked for every key of every command
//! and every pub/sub channel. Rebuilt whole by a reload, carried in the request's `View`.
//!
//! Categories: `read` (Redis's read-only commands and SUBSCRIBE), `write` (commands that may
//! change data, scripts, PUBLISH), `admin` (STRATA, CONFIG SET / RESETSTAT, CLIENT KILL, ACL
//! LIST and the commands Redis flags admin), `dangerous` (FLUSHALL, FLUSHDB, KEYS). The
//! connection and introspection commands (PING, AUTH, HELLO, QUIT, RESET, INFO, CLIENT,
//! COMMAND, CONFIG GET, TIME, ECHO, SELECT, ACL WHOAMI, UNSUBSCRIBE ...) are always allowed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::command::keys::key_positions;
use crate::command::spec::{flags, CommandSpec};
use crate::command::table::{command_index, COMMANDS};
use crate::config::layers::LayerSpec;
use crate::config::security::{SecurityConfig, UserConfig};
use crate::protocol::glob::{glob_match, Case};

/// A category bit.
const READ: u8 = 1;
const WRITE: u8 = 1 << 1;
const ADMIN: u8 = 1 << 2;
const DANGEROUS: u8 = 1 << 3;
const ALL: u8 = READ | WRITE | ADMIN | DANGEROUS;

/// The keys (and channels) a user may touch.
#[derive(Debug)]
enum Keys {
    All,
    Some {
        patterns: Vec<Vec<u8>>,
        /// Prefixes of the user's layers.
        prefixes: Vec<Vec<u8>>,
    },
}

/// Bytes that make a glob pattern match more than themselves.
fn is_glob_special(b: &u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b'\\')
}

impl Keys {
    /// A key or channel name: a layer prefix it begins with, or an allowed pattern matching
    /// it case-sensitively, as Redis matches `~` and `&` patterns.
    fn allows(&self, key: &[u8]) -> bool {
        match self {
            Keys::All => true,
            Keys::Some { patterns, prefixes } => {
                prefixes.iter().any(|p| key.starts_with(p))
                    || patterns.iter().any(|p| glob_match(p, key, Case::Sensitive))
            }
        }
    }

    /// A PSUBSCRIBE pattern, which subscribes to every channel it matches. Redis allows it
    /// only when it is one of the allowed patterns, byte for byte: one that merely matches an
    /// allowed pattern as a string can reach more (`a*c` is matched by `a?c`, and subscribes
    /// to `abbc`). A layer allows the patterns that begin with its prefix when the prefix has
    /// no glob special byte: every channel they match then begins with the prefix.
    fn allows_pattern(&self, pattern: &[u8]) -> bool {
        match self {
            Keys::All => true,
            Keys::Some { patterns, prefixes } => {
                patterns.iter().any(|p| p.as_slice() == pattern)
                    || prefixes
                        .iter()
                        .any(|p| pattern.starts_with(p) && !p.iter().any(is_glob_special))
            }
        }
    }
}

/// One user, compiled.
#[derive(Debug)]
pub struct User {
    pub name: Arc<str>,
    enabled: bool,
    /// Authenticates with any password (the default user when no password is configured).
    nopass: bool,
    hashes: Vec<[u8; 32]>,
    categories: u8,
    keys: Keys,
    /// The configured hashes in hex, for ACL LIST.
    hex: Vec<String>,
    /// The configured rules, for ACL LIST.
    rules: String,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key,
    Channel,
}

/// Every user, by name.
#[derive(Debug)]
pub struct Acl {
    users: HashMap<String, Arc<User>>,
    default: Arc<User>,
    /// No password and no user configured: every client may run everything.
    open: bool,
    /// SHA-256 of the admin endpoint's bearer token (`security.admin_token_sha256`).
    admin_token: Option<[u8; 32]>,
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let bytes = hex.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = bytes.get(2 * i..2 * i + 2)?;
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Equal in time that does not depend on where the first difference is.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn compile(u: &UserConfig, layers: &[LayerSpec]) -> User {
    let mut categories = 0;
    for c in &u.commands {
        categories |= match c.as_str() {
            "read" => READ,
            "write" => WRITE,
            "admin" => ADMIN,
            "dangerous" => DANGEROUS,
            "all" => ALL,
            _ => 0,
        };
    }
    let every_layer = u.layers.iter().any(|l| l == "default");
    let keys = if every_layer || u.keys.iter().any(|k| k == "*") {
        Keys::All
    } else {
        Keys::Some {
            patterns: u.keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            prefixes: layers
                .iter()
                .filter(|l| u.layers.contains(&l.name))
                .map(|l| l.prefix.as_bytes().to_vec())
                .collect(),
        }
    };
    let mut rules = Vec::new();
    if categories == ALL {
        rules.push("+@all".to_string());
    } else {
        for c in &u.commands {
            rules.push(format!("+@{c}"));
        }
    }
    for k in &u.keys {
        rules.push(format!("~{k}"));
    }
    for l in &u.layers {
        rules.push(format!("layer:{l}"));
    }
    User {
        name: Arc::from(u.name.as_str()),
        enabled: u.enabled,
        nopass: u.name == "default" && u.passwords.is_empty(),
        hashes: u.passwords.iter().filter_map(|h| parse_hash(h)).collect(),
        categories,
        keys,
        hex: u.passwords.iter().map(|h| h.to_ascii_lowercase()).collect(),
        rules: rules.join(" "),
    }
}

/// The default user when the configuration does not name one.
fn default_user(requirepass: Option<&str>) -> User {
    User {
        name: Arc::from("default"),
        enabled: true,
        nopass: requirepass.is_none(),
        hashes: requirepass.and_then(parse_hash).into_iter().collect(),
        categories: ALL,
        keys: Keys::All,
        hex: requirepass
            .map(|h| h.to_ascii_lowercase())
            .into_iter()
            .collect(),
        rules: "+@all ~*".to_string(),
    }
}

impl Acl {
    /// The rules of `security` (already validated), with the layers' prefixes.
    pub fn new(security: &SecurityConfig, layers: &[LayerSpec]) -> Acl {
        let mut users: HashMap<String, Arc<User>> = security
            .users
            .iter()
            .map(|u| (u.name.clone(), Arc::new(compile(u, layers))))
            .collect();
        let default = users
            .get("default")
            .cloned()
            .unwrap_or_else(|| Arc::new(default_user(security.requirepass.as_deref())));
        users.insert("default".into(), default.clone());
        let open = security.requirepass.is_none() && security.users.is_empty();
        Acl {
            users,
            default,
            open,
            admin_token: security.admin_token_sha256.as_deref().and_then(parse_hash),
        }
    }

    /// Whether the admin endpoint needs a bearer token (`security.admin_token_sha256`).
    pub fn admin_token_required(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Whether `token` is the admin endpoint's token: its SHA-256 compared in constant time.
    /// False when none is configured.
    pub fn admin_token_accepts(&self, token: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(token).into();
        self.admin_token
            .as_ref()
            .is_some_and(|h| same_digest(h, &digest))
    }

    /// No rules at all: the per-request check can be skipped.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether a new connection must authenticate before running commands: the default user
    /// needs a password or is disabled.
    pub fn auth_required(&self) -> bool {
        !(self.default.nopass && self.default.enabled)
    }

    /// Whether the default user has a password (AUTH with one argument authenticates it).
    pub fn default_has_password(&self) -> bool {
        !self.default.nopass
    }

    /// The names of the users, sorted (ACL USERS).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.users.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// The user a new connection runs as when no authentication is required.
    pub fn default_user(&self) -> &Arc<User> {
        &self.default
    }

    /// The user named `name` as configured now (a reload may have removed or disabled it).
    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// The user `name` when `password` is one of its passwords and it is enabled.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        let user = self.users.get(name)?;
        if !user.enabled {
            return None;
        }
        if user.nopass {
            return Some(user.clone());
        }
        let digest: [u8; 32] = Sha256::digest(password).into();
        // Every stored hash is compared, so the time does not tell which one matched.
        let matched = user
            .hashes
            .iter()
            .fold(false, |found, h| same_digest(h, &digest) | found);
        matched.then(|| user.clone())
    }

    /// Every user as Redis's ACL LIST shows one: `user <name> on|off #<sha256>... <rules>`.
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| self.users.get(n))
            .map(|u| {
                let mut line = format!("user {} {}", u.name, if u.enabled { "on" } else { "off" });
                if u.nopass {
                    line.push_str(" nopass");
                }
                for h in &u.hex {
                    line.push_str(" #");
                    line.push_str(h);
                }
                if !u.rules.is_empty() {
                    line.push(' ');
                    line.push_str(&u.rules);
                }
                line
            })
            .collect()
    }

    /// Whether `user` may run the command `spec` with `args` (every key and channel checked).
    pub fn check(
        &self,
        user: &User,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Result<(), Denied> {
        let needed = category(spec, args);
        if needed != 0 && user.categories & needed != needed {
            return Err(Denied::Command);
        }
        if matches!(user.keys, Keys::All) {
            return Ok(());
        }
        match spec.name {
            "subscribe" | "ssubscribe" => {
                let all = args.get(1..).unwrap_or_default();
                return match all.iter().all(|c| user.keys.allows(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                };
            }
            "psubscribe" => {
                let all = args.get(1..).unwrap_or_default();
                return match all.iter().all(|c| user.keys.allows_pattern(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                };
            }
            "publish" | "spublish" => {
                return match args.get(1).is_none_or(|c| user.keys.allows(c)) {
                    true => Ok(()),
                    false => Err(Denied::Channel),
                };
            }
            _ => {}
        }
        let mut positions = Vec::new();
        // A request whose keys cannot be found is refused by the command itself later.
        if key_positions(spec, args, &mut positions).is_err() {
            return Ok(());
        }
        for p in positions {
            if let Some(key) = args.get(p) {
                if !user.keys.allows(key) {
                    return Err(Denied::Key);
                }
            }
        }
        Ok(())
    }
}

impl User {
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// Marks a command whose category depends on its subcommand.
const BY_SUBCOMMAND: u8 = 1 << 7;

/// The category bits of a command-table entry, whatever its arguments (or `BY_SUBCOMMAND`).
fn category_of(spec: &CommandSpec) -> u8 {
    match spec.name {
        "flushall" | "flushdb" | "keys" => DANGEROUS,
        "strata" => ADMIN,
        "config" | "client" | "acl" => BY_SUBCOMMAND,
        "subscribe" | "ssubscribe" | "psubscribe" => READ,
        "publish" | "spublish" => WRITE,
        _ if spec.has(flags::ADMIN) => ADMIN,
        _ if spec.has(flags::WRITE) => WRITE,
        _ if spec.has(flags::READONLY) => READ,
        // EVAL, EVALSHA, FCALL: a script may write.
        _ if spec.has(flags::MOVABLEKEYS) => WRITE,
        _ => 0,
    }
}

/// The category bits a command needs (0: always allowed). Looked up in a table built once:
/// this runs for every request when users are configured.
fn category(spec: &'static CommandSpec, args: &[Bytes]) -> u8 {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| COMMANDS.iter().map(category_of).collect());
    let bits = command_index(spec)
        .and_then(|i| table.get(i).copied())
        .unwrap_or_else(|| category_of(spec));
    if bits != BY_SUBCOMMAND {
        return bits;
    }
    let sub = |name: &str| {
        args.get(1)
            .is_some_and(|s| s.eq_ignore_ascii_case(name.as_bytes()))
    };
    match spec.name {
        "config" if sub("set") || sub("resetstat") || sub("rewrite") => ADMIN,
        "client" if sub("kill") => ADMIN,
        "acl" if sub("list") || sub("users") || sub("getuser") => ADMIN,
        _ => 0,
    }
}

/// Redis's text for a refusal of `user` running `command` (`cmd|sub` for subcommands).
pub fn denied_text(denied: Denied, user: &str, command: &str) -> String {
    match denied {
        Denied::Command => {
            format!("NOPERM User {user} has no permissions to run the '{command}' command")
        }
        Denied::Key => {
            format!(
                "NOPERM User {user} has no permissions to access one of the keys used as arguments"
            )
        }
        Denied::Channel => format!(
            "NOPERM User {user} has no permissions to access one of the channels used as arguments"
        ),
    }
}

#[cfg(test)]
mod tests;
