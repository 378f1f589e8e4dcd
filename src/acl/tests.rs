#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;
use crate::command::table::lookup;

/// SHA-256 of "password".
const PASSWORD: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn acl() -> Acl {
    let security = SecurityConfig {
        allow_dangerous_commands: false,
        requirepass: Some(PASSWORD.into()),
        users: vec![
            UserConfig {
                name: "dash".into(),
                passwords: vec![PASSWORD.into()],
                enabled: true,
                commands: vec!["read".into()],
                keys: vec![],
                layers: vec!["meta".into()],
            },
            UserConfig {
                name: "off".into(),
                passwords: vec![PASSWORD.into()],
                enabled: false,
                commands: vec!["all".into()],
                keys: vec!["*".into()],
                layers: vec![],
            },
        ],
        admin_token_sha256: None,
    };
    Acl::new(&security, &[layer("meta", "meta:")])
}

fn check(acl: &Acl, user: &str, a: &[&str]) -> Result<(), Denied> {
    let a = args(a);
    let spec = lookup(&a[0]).unwrap();
    acl.check(acl.user(user).unwrap(), spec, &a)
}

#[test]
fn passwords_are_checked_against_their_hash() {
    let acl = acl();
    assert!(acl.auth_required());
    assert!(acl.authenticate(b"default", b"password").is_some());
    assert!(acl.authenticate(b"default", b"Password").is_none());
    assert!(acl.authenticate(b"dash", b"password").is_some());
    assert!(acl.authenticate(b"nobody", b"password").is_none());
    assert!(acl.authenticate(b"off", b"password").is_none(), "disabled");
    let open = Acl::new(&SecurityConfig::default(), &[]);
    assert!(!open.auth_required());
    assert!(open.authenticate(b"default", b"anything").is_some());
}

#[test]
fn categories_keys_and_channels() {
    let acl = acl();
    assert_eq!(check(&acl, "dash", &["GET", "meta:x"]), Ok(()));
    assert_eq!(
        check(&acl, "dash", &["SET", "meta:x", "v"]),
        Err(Denied::Command)
    );
    assert_eq!(check(&acl, "dash", &["GET", "route:x"]), Err(Denied::Key));
    assert_eq!(
        check(&acl, "dash", &["MGET", "meta:a", "route:b"]),
        Err(Denied::Key)
    );
    assert_eq!(check(&acl, "dash", &["PING"]), Ok(()));
    assert_eq!(check(&acl, "dash", &["CONFIG", "GET", "x"]), Ok(()));
    assert_eq!(
        check(&acl, "dash", &["CONFIG", "SET", "x", "y"]),
        Err(Denied::Command)
    );
    assert_eq!(check(&acl, "dash", &["KEYS", "*"]), Err(Denied::Command));
    assert_eq!(
        check(&acl, "dash", &["STRATA", "NODES"]),
        Err(Denied::Command)
    );
    assert_eq!(check(&acl, "dash", &["SUBSCRIBE", "meta:c"]), Ok(()));
    assert_eq!(
        check(&acl, "dash", &["SUBSCRIBE", "meta:c", "other"]),
        Err(Denied::Channel)
    );
    assert_eq!(check(&acl, "default", &["FLUSHALL"]), Ok(()));
    assert_eq!(
        check(&acl, "dash", &["EVAL_RO", "return 1", "1", "route:x"]),
        Err(Denied::Key)
    );
    assert_eq!(
        check(&acl, "dash", &["EVAL", "return 1", "1", "meta:x"]),
        Err(Denied::Command)
    );
}

/// Found while writing the `acl_rules` fuzz target (its model flags both): patterns matched
/// keys case-insensitively, and a PSUBSCRIBE pattern passed when an allowed pattern
/// matched it as a string.
#[test]
fn key_and_channel_patterns_are_redis_s() {
    let user = |keys: &[&str], layers: &[&str]| UserConfig {
        name: "u".into(),
        passwords: vec![PASSWORD.into()],
        enabled: true,
        commands: vec!["all".into()],
        keys: keys.iter().map(|k| k.to_string()).collect(),
        layers: layers.iter().map(|l| l.to_string()).collect(),
    };
    let security = SecurityConfig {
        users: vec![user(&["news.?", "a*"], &["meta", "odd"])],
        ..SecurityConfig::default()
    };
    let acl = Acl::new(&security, &[layer("meta", "meta:"), layer("odd", "o*")]);
    assert_eq!(check(&acl, "u", &["GET", "abc"]), Ok(()));
    assert_eq!(check(&acl, "u", &["GET", "Abc"]), Err(Denied::Key));
    assert_eq!(check(&acl, "u", &["GET", "META:x"]), Err(Denied::Key));
    assert_eq!(check(&acl, "u", &["SUBSCRIBE", "news.1"]), Ok(()));
    assert_eq!(
        check(&acl, "u", &["PUBLISH", "NEWS.1", "m"]),
        Err(Denied::Channel)
    );
    // Pattern subscriptions: an allowed pattern as it is, or a layer's plain prefix.
    assert_eq!(check(&acl, "u", &["PSUBSCRIBE", "news.?"]), Ok(()));
    assert_eq!(
        check(&acl, "u", &["PSUBSCRIBE", "news.*"]),
        Err(Denied::Channel)
    );
    assert_eq!(check(&acl, "u", &["PSUBSCRIBE", "a*"]), Ok(()));
    assert_eq!(check(&acl, "u", &["PSUBSCRIBE", "a"]), Err(Denied::Channel));
    assert_eq!(check(&acl, "u", &["PSUBSCRIBE", "meta:*"]), Ok(()));
    assert_eq!(
        check(&acl, "u", &["PSUBSCRIBE", "meta*"]),
        Err(Denied::Channel)
    );
    // A prefix with a glob byte allows the channels that begin with it, not patterns.
    assert_eq!(check(&acl, "u", &["SUBSCRIBE", "o*x"]), Ok(()));
    assert_eq!(
        check(&acl, "u", &["PSUBSCRIBE", "o*x"]),
        Err(Denied::Channel)
    );
}

#[test]
fn the_admin_token_is_checked_against_its_hash() {
    assert!(!acl().admin_token_required(), "none configured");
    assert!(!acl().admin_token_accepts(b"password"));
    let security = SecurityConfig {
        admin_token_sha256: Some(PASSWORD.to_uppercase()),
        ..SecurityConfig::default()
    };
    let acl = Acl::new(&security, &[]);
    assert!(acl.admin_token_required());
    assert!(
        acl.is_open(),
        "the token is the admin endpoint's, not the clients'"
    );
    assert!(acl.admin_token_accepts(b"password"));
    for wrong in [&b""[..], b"Password", b"password ", PASSWORD.as_bytes()] {
        assert!(!acl.admin_token_accepts(wrong), "{wrong:?}");
    }
}

#[test]
fn acl_list_shows_hashes_never_passwords() {
    let list = acl().list();
    assert!(list
        .iter()
        .any(|l| l == &format!("user dash on #{PASSWORD} +@read layer:meta")));
    assert!(list.iter().any(|l| l.starts_with("user off off #")));
    assert!(list.iter().all(|l| !l.contains(" password")));
}

/// A one-copy layer named `name` over the keys starting with `prefix`.
fn layer(name: &str, prefix: &str) -> LayerSpec {
    LayerSpec {
        name: name.into(),
        prefix: prefix.into(),
        key: None,
        ttl: None,
        max_ttl: None,
        replication: 1,
        write_consistency: crate::config::WriteConsistency::Quorum,
        read_consistency: crate::config::ReadConsistency::One,
        miss_failover: false,
        eject_on_down: false,
        coalesce: false,
        near_cache: None,
        backend: None,
        read_from: crate::config::ReadFrom::Primary,
    }
}
