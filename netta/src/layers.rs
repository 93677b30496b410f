//! The layering rule of `docs/architecture.md`, checked on the source: every
//! `crate::…` path in `src/` names a module of the same layer or a lower one, and
//! modules import each other in no circle. The layers are read from the table
//! in the document, so the two cannot drift apart.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Not in a layer: the crate root (the public `api` facade) and test fixtures.
const EXEMPT: [&str; 3] = ["lib", "main", "fixture"];

/// Layer number per top-level module, from the "Layers" table: its first column
/// is the number, its second the folders in backticks (`` `sink/`, `metrics/` ``).
fn layers(doc: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(n), Some(names)) = (cols.get(1), cols.get(2)) else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        for name in names.split('`').skip(1).step_by(2) {
            if let Some(m) = name.strip_suffix('/') {
                out.insert(m.to_string(), n);
            }
        }
    }
    out
}

/// Module path (`app::menu`) and file of every module under `src`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let mut parts = prefix.to_vec();
            if path.is_dir() {
                parts.push(name);
                walk(&path, &parts, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if name != "mod" {
                    parts.push(name);
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The text without comments and string contents, so only code is searched.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // Raw strings (r"…", r#"…"#) hold no quote that ends them early here.
            let hashes = b[..i].iter().rev().take_while(|c| **c == b'#').count();
            let raw = i > hashes && b[i - hashes - 1] == b'r';
            i += 1;
            while i < b.len() {
                if !raw && b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|c| *c == b'#') {
                    i += 1 + if raw { hashes } else { 0 };
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths of a use tree starting at `s[i..]` (after `crate::`): `a::b`,
/// `a::{b, c::{d, e}}`. Returns where the tree ends.
fn use_tree(s: &[u8], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let mut path = prefix.to_vec();
    loop {
        skip_ws(&mut i);
        if s.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = use_tree(s, i, &path, out);
                skip_ws(&mut i);
                match s.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                skip_ws(&mut i);
                if s.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        if i == start {
            out.push(path);
            return i;
        }
        path.push(String::from_utf8_lossy(&s[start..i]).into_owned());
        skip_ws(&mut i);
        if s[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// Every (importing module, imported module) pair, the imported one being the
/// longest prefix of the path that is a module.
fn imports(mods: &BTreeMap<String, PathBuf>) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for (m, file) in mods {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let b = code.as_bytes();
        for (at, _) in code.match_indices("crate::") {
            if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
                continue; // `$crate::`, `netta_crate::`
            }
            let mut paths = Vec::new();
            use_tree(b, at + "crate::".len(), &[], &mut paths);
            for p in paths {
                let to = (1..=p.len())
                    .rev()
                    .map(|k| p[..k].join("::"))
                    .find(|cand| mods.contains_key(cand));
                if let Some(to) = to {
                    edges.insert((m.clone(), to));
                }
            }
        }
    }
    edges
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

/// A module and its own submodules may use each other (`super::*`, `mod x;`).
fn nested(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// The import circles: groups of two or more modules that reach each other.
fn circles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.iter().filter(|(a, b)| !nested(a, b)) {
        next.entry(a).or_default().push(b);
    }
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            for n in next.get(m).into_iter().flatten() {
                if seen.insert(*n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|m| (*m, reach(m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reached {
        if !r.contains(m) {
            continue;
        }
        let group: BTreeSet<String> = r
            .iter()
            .filter(|n| reached.get(**n).is_some_and(|rn| rn.contains(m)))
            .map(|n| n.to_string())
            .collect();
        if !out.contains(&group) {
            out.push(group);
        }
    }
    out
}

#[test]
fn modules_import_only_their_own_layer_or_lower_ones_and_in_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/architecture.md")).unwrap();
    let layer = layers(&doc);
    assert!(layer.len() >= 8, "no layer table in docs/architecture.md");
    let mods = modules(&root.join("src"));
    let mut problems = Vec::new();
    let tops: BTreeSet<&str> = mods.keys().map(|m| top(m)).collect();
    for t in tops {
        if !layer.contains_key(t) && !EXEMPT.contains(&t) && t != "layers" {
            problems.push(format!("{t}: in no layer of docs/architecture.md"));
        }
    }
    let edges = imports(&mods);
    for (a, b) in &edges {
        if let (Some(la), Some(lb)) = (layer.get(top(a)), layer.get(top(b))) {
            if lb > la {
                problems.push(format!("{a} (layer {la}) imports {b} (layer {lb})"));
            }
        }
    }
    for c in circles(&edges) {
        problems.push(format!("import circle: {c:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_nested_paths_and_skips_comments() {
    let code = code_only(
        "use crate::{a::b, c::{d, e::F}};\n// crate::x\nlet s = \"crate::y\"; crate::g::h(1);",
    );
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        use_tree(code.as_bytes(), at + 7, &[], &mut found);
    }
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(found, ["a::b", "c::d", "c::e::F", "g::h"]);
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("x", "x::y")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let c = circles(&edges);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].len(), 3);
}
