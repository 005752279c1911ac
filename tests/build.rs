//! Builds the test-only policies under `tests/plugins/` and the example
//! policies under `plugins/examples/`, and exports their paths to the
//! end-to-end tests, which swap them into a running server.

use std::path::PathBuf;

use presence_plugin_build::{Component, build};

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("tests live in the workspace")
        .to_path_buf();
    let component = |package, env| Component { package, env };
    build(
        &workspace,
        &[
            component(
                "presence-quick-status-policy",
                "PRESENCE_TEST_QUICK_STATUS_WASM",
            ),
            component(
                "presence-hostile-typing-policy",
                "PRESENCE_TEST_HOSTILE_TYPING_WASM",
            ),
            component(
                "presence-panicking-typing-policy",
                "PRESENCE_TEST_PANICKING_TYPING_WASM",
            ),
            component(
                "presence-hostile-privacy-policy",
                "PRESENCE_TEST_HOSTILE_PRIVACY_WASM",
            ),
            component(
                "presence-example-telegram-privacy",
                "PRESENCE_EXAMPLE_TELEGRAM_PRIVACY_WASM",
            ),
            component(
                "presence-example-large-groups-typing",
                "PRESENCE_EXAMPLE_LARGE_GROUPS_TYPING_WASM",
            ),
            component(
                "presence-example-mobile-status",
                "PRESENCE_EXAMPLE_MOBILE_STATUS_WASM",
            ),
        ],
        &[manifest.join("plugins"), workspace.join("plugins")],
    );
}
