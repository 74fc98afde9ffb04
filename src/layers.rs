//! Test-only: the import layering of the core, checked on the source text so that a cycle fails
//! a unit test instead of growing unnoticed.
//!
//! Inside `src/cluster/` every module has a layer ([`CLUSTER_LAYERS`]) and names (in `use`
//! lines or in paths) only modules of lower layers, so the core has no import cycle. Between
//! the crate's top-level modules one rule is checked: the gRPC service is built on `node`, so
//! nothing `node` depends on, directly or not, depends on `service`.
//!
//! Dependencies are read from paths: `crate::cluster::m`, `super::m` in a file of
//! `src/cluster/` (`super::super::m` one directory down), `crate::m` at the top level. Comments,
//! string literals and `#[cfg(test)]` items are skipped: a test may build on anything.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The layers of `src/cluster/`, lowest first, each with why it sits there. A module may name
/// only modules of earlier layers, never one of its own layer. A new module must be placed here.
const CLUSTER_LAYERS: &[(&str, &[&str])] = &[
    (
        "plain values: ids, epochs, weights, flags",
        &["types", "flags"],
    ),
    ("pools and their PG tables", &["pool"]),
    (
        "refusals: they name ids and failure domains, and the model's checks return them",
        &["error"],
    ),
    (
        "OSDs and images, with the checks of their fields",
        &["osd", "image"],
    ),
    (
        "events: what a change to OSDs, pools, PGs, images and flags means",
        &["events"],
    ),
    (
        "health as stored: raised checks, mutes, and the events of their transitions",
        &["health"],
    ),
    (
        "views over OSDs: the placement topology, the auto-out guards",
        &["topology", "out_guards"],
    ),
    ("placement and rebalance planning", &["placement"]),
    ("what is stored: the records and their codec", &["records"]),
    ("the state: group bookkeeping, records", &["state"]),
    ("what commands answer", &["reply"]),
    (
        "what callers ask: one type per command with its reply type, and `apply`",
        &["command"],
    ),
    (
        "what is read from the state without changing it",
        &["queries"],
    ),
    (
        "the command handlers, and the term tasks' bookkeeping over the state",
        &[
            "osd_ops",
            "pool_ops",
            "health_ops",
            "rebalance_ops",
            "image_ops",
            "failure",
            "iostats",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `(module, depth below `base`, text)` of every `.rs` file under `base`: `m.rs` and the files
/// of `m/` belong to module `m`; `mod.rs`/`lib.rs` at the top and the `tests` directory are
/// skipped.
fn files(base: &Path) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![(base.to_path_buf(), None::<String>, 0usize)];
    while let Some((dir, module, depth)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if module.is_none() && name == "tests" {
                    continue;
                }
                let m = module.clone().unwrap_or_else(|| name.clone());
                dirs.push((path, Some(m), depth + 1));
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let m = match &module {
                    Some(m) => m.clone(),
                    None if stem == "mod" || stem == "lib" || stem == "main" => continue,
                    None => stem.to_string(),
                };
                out.push((m, depth, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// The code of `text` without comments, without the contents of string and char literals, and
/// without `#[cfg(test)]` items.
fn code(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let at = |s: &str| s.chars().enumerate().all(|(k, x)| c.get(i + k) == Some(&x));
        if at("//") {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at("/*") {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || at("br")) && (i == 0 || !ident(c[i - 1])) && {
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // A raw string: up to the quote followed by as many hashes.
            i += if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); anything else after a quote is a lifetime.
            i += 2;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    without_test_items(&out)
}

/// `code` without the items marked `#[cfg(test)]` (up to their `;` or their closing brace).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The first segment of every path in `code` that starts with one of `prefixes` (a `{...}`
/// group gives the first segment of each of its entries).
fn named_after(code: &str, prefixes: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix.as_str()) {
            // Only whole paths: not the tail of a longer one (`super::super::x` for `super::`).
            if code[..at]
                .bytes()
                .last()
                .is_some_and(|b| b == b':' || ident(b))
            {
                continue;
            }
            let after = &code[at + prefix.len()..];
            if after.starts_with("super::") {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 0usize;
                let mut entry_start = true;
                for (k, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => entry_start = true,
                        _ if entry_start && !ch.is_whitespace() => {
                            entry_start = false;
                            let len = group[k..].bytes().take_while(|b| ident(*b)).count();
                            names.insert(group[k..k + len].to_string());
                        }
                        _ => {}
                    }
                }
            } else {
                let len = after.bytes().take_while(|b| ident(*b)).count();
                names.insert(after[..len].to_string());
            }
        }
    }
    names
}

/// The modules each module of `src/cluster/` names.
fn cluster_edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, depth, text) in files(&src().join("cluster")) {
        let supers = "super::".repeat(depth + 1);
        let named = named_after(&code(&text), &[supers, "crate::cluster::".to_string()]);
        edges.entry(module.clone()).or_default().extend(named);
    }
    for (module, named) in &mut edges {
        named.remove(module);
    }
    edges
}

/// The top-level modules each top-level module of the crate names.
fn crate_edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, depth, text) in files(&src()) {
        let supers = "super::".repeat(depth + 1);
        let named = named_after(&code(&text), &[supers, "crate::".to_string()]);
        edges.entry(module.clone()).or_default().extend(named);
    }
    let modules: BTreeSet<String> = edges.keys().cloned().collect();
    for (module, named) in &mut edges {
        named.retain(|n| n != module && modules.contains(n));
    }
    edges
}

#[test]
fn every_cluster_module_names_only_lower_layers() {
    let layer_of: BTreeMap<&str, usize> = CLUSTER_LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, modules))| modules.iter().map(move |m| (*m, i)))
        .collect();
    let edges = cluster_edges();
    let mut wrong = Vec::new();
    for (module, named) in &edges {
        let Some(&mine) = layer_of.get(module.as_str()) else {
            wrong.push(format!("{module} has no layer in CLUSTER_LAYERS"));
            continue;
        };
        for name in named {
            match layer_of.get(name.as_str()) {
                Some(&theirs) if theirs < mine => {}
                Some(_) => wrong.push(format!(
                    "{module} ({}) names {name} ({}), a layer not below its own",
                    CLUSTER_LAYERS[mine].0,
                    CLUSTER_LAYERS[layer_of[name.as_str()]].0
                )),
                // `mod.rs` re-exports hide which module an item comes from.
                None => wrong.push(format!(
                    "{module} names `{name}` through the cluster root; name its module instead"
                )),
            }
        }
    }
    for module in layer_of.keys() {
        if !edges.contains_key(*module) {
            wrong.push(format!("CLUSTER_LAYERS lists {module}, which has no file"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn nothing_node_depends_on_depends_on_the_service() {
    let edges = crate_edges();
    let mut path_to: BTreeMap<&str, Vec<&str>> = BTreeMap::from([("node", vec!["node"])]);
    let mut queue = VecDeque::from(["node"]);
    while let Some(module) = queue.pop_front() {
        for next in edges.get(module).into_iter().flatten() {
            if !path_to.contains_key(next.as_str()) {
                let mut path = path_to[module].clone();
                path.push(next);
                path_to.insert(next, path);
                queue.push_back(next);
            }
        }
    }
    assert!(
        !path_to.contains_key("service"),
        "node depends on service: {}",
        path_to["service"].join(" → ")
    );
}

#[test]
fn the_scanner_sees_paths_and_skips_comments_strings_and_tests() {
    let text = r##"
        use super::osd::{Osd, Shard};
        use super::{pool::Pool, types::{OsdId, PgId}};
        // use super::commented::X;
        /* use super::block::X; */
        const S: &str = "super::string::X";
        const R: &str = r#"super::raw::X"#;
        const C: char = '{';
        fn f<'a>(x: &'a str) -> super::inline::Y { super::super::outside::Z }
        #[cfg(test)]
        mod tests {
            use super::tested::X;
        }
        fn g() { crate::cluster::state::apply() }
    "##;
    let named = named_after(
        &code(text),
        &["super::".to_string(), "crate::cluster::".to_string()],
    );
    let expected = ["inline", "osd", "pool", "state", "types"];
    assert_eq!(named, expected.iter().map(|s| s.to_string()).collect());
}
