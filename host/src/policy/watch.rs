//! The watched plugin directory: when `<slot>.wasm` changes (written in place
//! or renamed over, as deploy tools do), it is installed through the same
//! pipeline as an upload. A refused file is logged and the slot keeps its
//! component; a deleted file changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{Policies, Slot};

/// How often the directory is looked at.
pub const PLUGIN_DIR_POLL: Duration = Duration::from_secs(1);

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        inode,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Runs until `stop`; files present at start are taken as already loaded.
pub async fn watch(policies: Arc<Policies>, dir: PathBuf, stop: CancellationToken) {
    let path = |slot: Slot| dir.join(slot.file_name());
    let mut seen: HashMap<Slot, Option<Stamp>> = Slot::ALL
        .into_iter()
        .map(|s| (s, stamp(&path(s))))
        .collect();
    let mut tick = tokio::time::interval(PLUGIN_DIR_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for slot in Slot::ALL {
            let file = path(slot);
            let now = stamp(&file);
            if now.is_none() || seen.get(&slot) == Some(&now) {
                continue;
            }
            seen.insert(slot, now);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            if hex::encode(Sha256::digest(&bytes)) == policies.slot(slot).sha256 {
                continue;
            }
            let p = policies.clone();
            let source = file.display().to_string();
            let result = tokio::task::spawn_blocking(move || p.install(slot, &bytes, source)).await;
            if let Ok(Err(rejected)) = result {
                tracing::warn!(%slot, file = %file.display(), error = %rejected, "plugin file refused; keeping the current one");
            }
        }
    }
}
