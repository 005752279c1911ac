//! The module layout the README promises: calls go one way. No top-level
//! module of `host/src` reaches into one that reaches back into it, the
//! cluster knows nothing of the presence state, and the presence state
//! nothing of the WebSocket transport.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Top-level module → the `crate::…` modules its files name.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![Path::new(SRC).to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(SRC).unwrap();
            let first = rel.iter().next().unwrap().to_str().unwrap();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let named = deps.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let target = &rest[..end];
                if !target.is_empty() && target != module {
                    named.insert(target.to_owned());
                }
            }
        }
    }
    deps
}

fn reaches(deps: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(deps.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_top_level_module_reaches_back_into_one_that_calls_it() {
    let deps = dependencies();
    let mut cycles = Vec::new();
    for (module, named) in &deps {
        for target in named {
            if reaches(&deps, target, module) {
                cycles.push(format!("{module} → {target} → … → {module}"));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn the_cluster_knows_nothing_of_presence_nor_presence_of_the_websocket() {
    let deps = dependencies();
    assert!(
        !deps["cluster"].contains("presence"),
        "{:?}",
        deps["cluster"]
    );
    assert!(!deps["presence"].contains("ws"), "{:?}", deps["presence"]);
    assert!(!deps["ws"].contains("http"), "{:?}", deps["ws"]);
}
