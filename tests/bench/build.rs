//! Builds the two typing policies S5 swaps between (the built-in one and
//! `plugins/examples/large-groups-typing`) for `wasm32-wasip2` and exports
//! their paths, so the bench embeds them and needs no plugin files to run.

use std::path::PathBuf;

use presence_plugin_build::{Component, build};

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .nth(2)
        .expect("the bench lives in tests/bench of the workspace")
        .to_path_buf();
    build(
        &workspace,
        &[
            Component {
                package: "presence-typing-policy",
                env: "PRESENCE_BENCH_TYPING_WASM",
            },
            Component {
                package: "presence-example-large-groups-typing",
                env: "PRESENCE_BENCH_LARGE_GROUPS_TYPING_WASM",
            },
        ],
        &[workspace.join("plugins")],
    );
}
