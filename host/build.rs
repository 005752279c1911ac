//! Builds the default policy components (`plugins/{typing,status,privacy}`)
//! and exports their paths as `PRESENCE_DEFAULT_{TYPING,STATUS,PRIVACY}_WASM`,
//! so `policy` can embed them with `include_bytes!`.

use std::path::PathBuf;

use presence_plugin_build::{Component, build};

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("the host lives in the workspace")
        .to_path_buf();
    build(
        &workspace,
        &[
            Component {
                package: "presence-typing-policy",
                env: "PRESENCE_DEFAULT_TYPING_WASM",
            },
            Component {
                package: "presence-status-policy",
                env: "PRESENCE_DEFAULT_STATUS_WASM",
            },
            Component {
                package: "presence-privacy-policy",
                env: "PRESENCE_DEFAULT_PRIVACY_WASM",
            },
        ],
        &[workspace.join("plugins"), workspace.join("migrations")],
    );
}
