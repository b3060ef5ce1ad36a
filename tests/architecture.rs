//! The layering docs/architecture.md describes, checked on the source: the
//! top-level modules of `src/` import each other without a cycle (use lines
//! and inline `crate::` paths, comments included), and the core (the pure
//! layers) has no runtime, API client or metrics in it.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure layers: decisions, codecs and rules, tested without a cluster.
const CORE: &[&str] = &[
    "model",
    "duration",
    "resources",
    "schedule",
    "annotations",
    "config",
    "decide",
    "scaler",
    "gitops",
    "plan",
    "lifecycle",
    "redirect",
    "gateway",
];

/// What the core must not use: an async runtime, the API client, metrics.
const SHELL_ONLY: &[&str] = &[
    "tokio::",
    "kube::Client",
    "kube::api::",
    "kube::Api",
    "kube::runtime",
    "prometheus::",
    "crate::metrics",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each top-level module's source files (the binary, src/bin, is not one).
fn modules() -> BTreeMap<String, Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a name")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read a source file");
        modules.entry(top).or_default().push(text);
    }
    modules
}

/// The modules each module names through `crate::`.
fn imports(modules: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (name, texts) in modules {
        let mut used = BTreeSet::new();
        for text in texts {
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let mut found = Vec::new();
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    found.extend(
                        group
                            .split(',')
                            .map(|p| p.trim().split("::").next().unwrap_or("")),
                    );
                } else {
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    found.push(&rest[..end]);
                }
                for m in found {
                    if m != name && modules.contains_key(m) {
                        used.insert(m.to_string());
                    }
                }
            }
        }
        edges.insert(name.clone(), used);
    }
    edges
}

fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for next in &edges[&m] {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let edges = imports(&modules());
    assert!(edges.len() > 15, "too few modules found: {edges:?}");
    let cycles: Vec<String> = edges
        .iter()
        .flat_map(|(a, uses)| uses.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(&edges, b, a))
        .map(|(a, b)| format!("{a} -> {b} -> ... -> {a}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_core_uses_no_runtime_no_api_client_and_no_metrics() {
    let modules = modules();
    let edges = imports(&modules);
    for core in CORE {
        let texts = &modules[*core];
        for banned in SHELL_ONLY {
            assert!(
                texts.iter().all(|t| !t.contains(banned)),
                "core module {core} uses {banned}"
            );
        }
        for used in &edges[*core] {
            assert!(
                CORE.contains(&used.as_str()),
                "core module {core} imports {used}, which is not core"
            );
        }
    }
}

#[test]
fn the_check_finds_a_cycle_when_there_is_one() {
    let mut modules = BTreeMap::new();
    modules.insert("a".to_string(), vec!["use crate::b::X;".to_string()]);
    modules.insert(
        "b".to_string(),
        vec!["fn f() { crate::{a::Y, c}; }".to_string()],
    );
    modules.insert("c".to_string(), vec![String::new()]);
    let edges = imports(&modules);
    assert!(reaches(&edges, "a", "a") && reaches(&edges, "b", "b"));
    assert!(!reaches(&edges, "c", "a"));
}
