//! The watched plugin directory: when `<slot>.wasm` changes (written in place
//! or renamed over, as deploy tools do), it is installed through the same
//! pipeline as an upload (see `presence::plugins`). A refused file is logged
//! and the slot keeps its component; a deleted file changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

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

/// The plugin directory as last looked at: one file per slot.
pub struct PluginDir {
    dir: PathBuf,
    seen: HashMap<Slot, Option<Stamp>>,
}

/// A plugin file that changed and differs from what its slot serves.
pub struct Changed {
    pub slot: Slot,
    pub bytes: Vec<u8>,
    /// The file's path, as the slot's source.
    pub source: String,
}

impl PluginDir {
    /// Files present now are taken as already loaded.
    pub fn new(dir: PathBuf) -> PluginDir {
        let seen = Slot::ALL
            .into_iter()
            .map(|s| (s, stamp(&dir.join(s.file_name()))))
            .collect();
        PluginDir { dir, seen }
    }

    /// The files written or renamed over since the last look whose
    /// component is not the one its slot serves; a deleted file changes
    /// nothing.
    pub fn changed(&mut self, policies: &Policies) -> Vec<Changed> {
        let mut changed = Vec::new();
        for slot in Slot::ALL {
            let file = self.dir.join(slot.file_name());
            let now = stamp(&file);
            if now.is_none() || self.seen.get(&slot) == Some(&now) {
                continue;
            }
            self.seen.insert(slot, now);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            if hex::encode(Sha256::digest(&bytes)) == policies.slot(slot).sha256 {
                continue;
            }
            changed.push(Changed {
                slot,
                bytes,
                source: file.display().to_string(),
            });
        }
        changed
    }
}
