//! The modules of `src/` depend one way: each may use only the modules listed for it below
//! (the layers of `src/lib.rs`'s map). This test reads every `crate::<module>` path in the
//! non-test code of each module and fails on any other, so a back edge is caught the day it is
//! written, not when it has grown into a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the modules it may use, lowest layer first. A module may use anything a
/// module it may use may use only by naming it here too: the list is the whole truth.
const ALLOWED: &[(&str, &[&str])] = &[
    ("latch", &[]),
    ("client_tracking", &[]),
    ("protocol", &[]),
    ("tls", &[]),
    ("config", &["client_tracking", "protocol", "tls"]),
    ("admin", &[]),
    ("command", &["protocol"]),
    ("stats", &["command", "protocol"]),
    ("near", &["client_tracking", "config"]),
    ("policy", &["config", "near", "protocol", "stats"]),
    ("acl", &["command", "config", "protocol"]),
    (
        "cluster",
        &[
            "acl", "config", "latch", "policy", "protocol", "stats", "tls",
        ],
    ),
    (
        "backend",
        &["cluster", "config", "latch", "protocol", "stats", "tls"],
    ),
    ("warm", &["backend", "cluster", "config", "protocol"]),
    ("load", &["backend", "cluster", "config", "protocol"]),
    ("bench", &["protocol"]),
    (
        "repair",
        &[
            "backend", "cluster", "config", "policy", "protocol", "stats",
        ],
    ),
    (
        "health",
        &["backend", "cluster", "config", "protocol", "repair", "tls"],
    ),
    (
        "tracking",
        &["backend", "cluster", "config", "near", "protocol"],
    ),
    (
        "coordinator",
        &[
            "backend",
            "client_tracking",
            "cluster",
            "command",
            "config",
            "near",
            "policy",
            "protocol",
            "repair",
            "stats",
        ],
    ),
    (
        "control",
        &[
            "acl",
            "backend",
            "client_tracking",
            "cluster",
            "command",
            "config",
            "coordinator",
            "health",
            "latch",
            "policy",
            "protocol",
            "repair",
            "stats",
            "tls",
            "tracking",
        ],
    ),
    (
        "builtin",
        &[
            "acl",
            "admin",
            "backend",
            "client_tracking",
            "cluster",
            "command",
            "config",
            "control",
            "coordinator",
            "policy",
            "protocol",
            "repair",
            "stats",
        ],
    ),
    (
        "client",
        &[
            "acl",
            "backend",
            "client_tracking",
            "builtin",
            "cluster",
            "command",
            "config",
            "control",
            "coordinator",
            "policy",
            "protocol",
            "stats",
            "tls",
        ],
    ),
];

/// The composition root: builds everything, so it may use every module.
const ROOT: &[&str] = &["server", "signals", "lib", "main"];

/// The modules a piece of Rust source names as `crate::<module>` (also inside
/// `use crate::{a, b::c}` groups), in its code before `#[cfg(test)]`; comments (doc links
/// among them) are not dependencies.
fn named_modules(source: &str, known: &BTreeSet<&str>) -> BTreeSet<String> {
    let before_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String = before_tests
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if known.contains(name.as_str()) {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if known.contains(name.as_str()) {
            out.insert(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Unit-test directories hold test code only.
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// Every edge `module -> used module` of the source tree.
fn edges(src: &Path, known: &BTreeSet<&str>) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let first = relative
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        for used in named_modules(&source, known) {
            if used != first {
                out.entry(first.clone())
                    .or_default()
                    .entry(used)
                    .or_insert_with(|| relative.display().to_string());
            }
        }
    }
    out
}

fn known_modules() -> BTreeSet<&'static str> {
    ALLOWED
        .iter()
        .map(|(m, _)| *m)
        .chain(ROOT.iter().copied())
        .collect()
}

#[test]
fn modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = known_modules();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, uses) in edges(&src, &known) {
        if ROOT.contains(&module.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "{module}: not in the layer table of tests/layering.rs"
            ));
            continue;
        };
        for (used, file) in uses {
            if !may.contains(&used.as_str()) {
                wrong.push(format!("{module} -> {used} (in src/{file})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering (see tests/layering.rs and src/lib.rs):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_module_is_in_the_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let known = known_modules();
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .filter(|m| !known.contains(m))
        .collect();
    assert!(missing.is_empty(), "modules with no layer: {missing:?}");
}

/// The table itself has no cycle: listed lowest first, each module may use only modules
/// listed before it.
#[test]
fn the_table_is_ordered() {
    let mut seen = BTreeSet::new();
    for (module, uses) in ALLOWED {
        for used in *uses {
            assert!(
                seen.contains(used),
                "{module} may use {used}, which is listed after it (a cycle)"
            );
        }
        seen.insert(*module);
    }
}

/// The check can fail: a back edge in a piece of source is found.
#[test]
fn a_back_edge_is_found() {
    let known = known_modules();
    let source = "use crate::{protocol::Reply, client::session};\n/// See [`crate::control`].\nfn f() { crate::server::x(); } // crate::health\n#[cfg(test)]\nmod tests { use crate::builtin; }";
    let found = named_modules(source, &known);
    let expected: BTreeSet<String> = ["client", "protocol", "server"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
    let may = ALLOWED
        .iter()
        .find(|(m, _)| *m == "backend")
        .map(|(_, u)| *u)
        .unwrap_or_default();
    assert!(found.iter().any(|m| !may.contains(&m.as_str())));
}
