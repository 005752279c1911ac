//! Builds the test-only policy components under `tests/plugins/` and exports
//! their paths (`PRESENCE_TEST_QUICK_STATUS_WASM`) to the end-to-end tests.

use std::path::PathBuf;

use presence_plugin_build::{Component, build};

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("tests live in the workspace")
        .to_path_buf();
    build(
        &workspace,
        &[Component {
            package: "presence-quick-status-policy",
            env: "PRESENCE_TEST_QUICK_STATUS_WASM",
        }],
        &[manifest.join("plugins"), workspace.join("wit")],
    );
}
