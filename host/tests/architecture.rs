//! The layers of `host/src` point one way: every `crate::` path a module
//! names (its tests aside) is of its own layer or a lower one, and no
//! modules import each other in a cycle. `docs/architecture.md` draws the
//! same layers; a new module is added to both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    // Leaves: the public types of a render, values, clocks, text.
    &["contract", "value", "clock", "escape", "operator_file"],
    // Backends and bounds, each owning its settings.
    &[
        "store",
        "store::file",
        "store::aws",
        "store::metered",
        "ratelimit",
        "sandbox::limits",
    ],
    // Configuration (plain data) and the cache.
    &["config", "config::tenants", "cache"],
    // Policy built from configuration; audit records.
    &["policy", "audit"],
    // Resolving references under policy.
    &["resolve"],
    // Prepared fields, sealed text, reveal masks, evaluation (no wasmtime).
    &["render"],
    // wasmtime.
    &[
        "sandbox::deterministic",
        "sandbox::interface",
        "sandbox::sync_path",
        "sandbox::plan",
        "sandbox::verdicts",
        "sandbox",
    ],
    // The host's errors, its tenants, the host.
    &["error"],
    &["tenant"],
    &["keyward"],
    // Entry points over the host.
    &["embed", "check"],
    &[""],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every module file under `src` by its module path (`sandbox::limits`).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).expect("source readable");
            // Unit tests may reach anywhere; they come last in a file.
            // Doc links may point anywhere; comments are not imports.
            let code = text
                .split("#[cfg(test)]\nmod ")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            found.insert(parts.join("::"), code);
        }
    }
    found
}

/// The modules `code` names through `crate::` (and `super::` inside a
/// directory module), resolved to the longest known module path.
fn imports(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
    let mut named = BTreeSet::new();
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: each entry's path.
                let end = group.find('}').unwrap_or(group.len());
                for entry in group[..end].split(',') {
                    paths.push(join(base, &path_of(entry.trim())));
                }
            } else {
                paths.push(join(base, &path_of(rest)));
            }
        }
    }
    for path in paths {
        let mut candidate = path.as_str();
        loop {
            if known.contains(candidate) {
                if candidate != module {
                    named.insert(candidate.to_string());
                }
                break;
            }
            match candidate.rsplit_once("::") {
                Some((shorter, _)) => candidate = shorter,
                None => break,
            }
        }
    }
    named
}

fn path_of(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_string()
}

fn join(base: &str, path: &str) -> String {
    if base.is_empty() {
        path.to_string()
    } else {
        format!("{base}::{path}")
    }
}

#[test]
fn host_modules_import_only_their_own_layer_or_lower_and_never_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    let mut upward = Vec::new();
    for (module, code) in &modules {
        let Some(layer) = layer_of(module) else {
            panic!("module `{module}` is in no layer: add it to LAYERS and docs/architecture.md");
        };
        let named = imports(module, code, &known);
        for target in &named {
            let target_layer = layer_of(target).unwrap_or(usize::MAX);
            if target_layer > layer {
                upward.push(format!("{module} -> {target}"));
            }
        }
        graph.insert(module.clone(), named);
    }
    assert!(
        upward.is_empty(),
        "imports pointing up a layer: {upward:#?}"
    );
    // No cycle, within a layer either: a depth-first walk that meets a
    // module still on its path has found one.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| m == module) {
            panic!("import cycle: {} -> {module}", path[at..].join(" -> "));
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(module.to_string());
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
    // The check sees imports at all (a parser that found none would pass).
    assert!(
        graph["keyward"].contains("sandbox"),
        "{:?}",
        graph["keyward"]
    );
    assert!(
        graph["sandbox"].contains("render"),
        "{:?}",
        graph["sandbox"]
    );
}
