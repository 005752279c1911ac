//! What an operator changes: the component serving a policy slot. An
//! install is validated before it swaps in; in a cluster the component is
//! stored where every node can fetch it, and announced, so every node
//! serves the same one.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use tokio_util::sync::CancellationToken;

use super::Presence;
use crate::policy::watch::{PLUGIN_DIR_POLL, PluginDir};
use crate::policy::{Policies, Rollback, Slot, SlotInfo, UPLOAD_SOURCE};
use crate::store::{self, Store};

/// [`SlotInfo::source`] of a component installed because another node of
/// the cluster installed it.
pub const CLUSTER_SOURCE: &str = "cluster";

/// Why a plugin change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PluginChange {
    /// The component was refused; the slot keeps serving its current one.
    #[error("the {0} plugin was refused: {1}")]
    Rejected(Slot, String),
    #[error("the {0} slot has no previous plugin to roll back to")]
    NoPrevious(Slot),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the install task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What an install did.
pub struct Installed {
    pub info: SlotInfo,
    /// The component already served the slot: nothing changed, and no
    /// rollback history was added.
    pub already_active: bool,
}

impl Presence {
    /// Validates `bytes` for `slot` and swaps it in, here and on every node.
    pub async fn install_plugin(
        &self,
        slot: Slot,
        bytes: Bytes,
    ) -> Result<Installed, PluginChange> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(info) = self.policies.serving(slot, &sha256) {
            return Ok(Installed {
                info,
                already_active: true,
            });
        }
        let info = self
            .install_plugin_from(slot, bytes, UPLOAD_SOURCE.to_owned())
            .await?;
        Ok(Installed {
            info,
            already_active: false,
        })
    }

    /// As [`install_plugin`](Self::install_plugin), naming where it came from.
    async fn install_plugin_from(
        &self,
        slot: Slot,
        bytes: Bytes,
        source: String,
    ) -> Result<SlotInfo, PluginChange> {
        let policies = self.policies.clone();
        // Compiling a component takes a while: off the async workers.
        let (installed, bytes) = tokio::task::spawn_blocking(move || {
            let installed = policies.install(slot, &bytes, source);
            (installed, bytes)
        })
        .await?;
        let info =
            installed.map_err(|rejected| PluginChange::Rejected(slot, rejected.to_string()))?;
        self.plugin_changed(slot, &info.sha256, Some(&bytes))
            .await?;
        Ok(info)
    }

    /// Returns `slot` to its previous component, here and on every node.
    pub async fn rollback_plugin(&self, slot: Slot) -> Result<SlotInfo, PluginChange> {
        let info = self
            .policies
            .rollback(slot)
            .ok_or(PluginChange::NoPrevious(slot))?;
        self.plugin_changed(slot, &info.sha256, None).await?;
        Ok(info)
    }

    /// In a cluster, the component is stored where every node can fetch
    /// it, marked active, and announced.
    async fn plugin_changed(
        &self,
        slot: Slot,
        sha256: &str,
        bytes: Option<&[u8]>,
    ) -> store::Result<()> {
        if self.cluster.is_none() {
            return Ok(());
        }
        let store = self.store();
        if let Some(bytes) = bytes {
            store.save_plugin(sha256, slot.as_str(), bytes).await?;
        }
        store.set_active_plugin(slot.as_str(), sha256).await?;
        self.publish_plugin(slot, sha256);
        Ok(())
    }

    /// Installs what an operator puts in the plugin directory, here and on
    /// every node, until `stop`.
    pub async fn watch_plugin_dir(
        self: Arc<Self>,
        dir: std::path::PathBuf,
        stop: CancellationToken,
    ) {
        let mut plugin_dir = PluginDir::new(dir);
        let mut tick = tokio::time::interval(PLUGIN_DIR_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for file in plugin_dir.changed(&self.policies) {
                let installed = self
                    .install_plugin_from(file.slot, file.bytes.into(), file.source.clone())
                    .await;
                if let Err(e) = installed {
                    tracing::warn!(slot = %file.slot, file = %file.source, error = %e, "plugin file refused; keeping the current one");
                }
            }
        }
    }

    /// Makes every node follow the slots this node rolled back by itself
    /// (a component that kept failing), until the policies are gone.
    pub(super) async fn follow_own_rollbacks(
        presence: std::sync::Weak<Presence>,
        mut rollbacks: tokio::sync::mpsc::UnboundedReceiver<Rollback>,
    ) {
        while let Some(Rollback { slot, sha256 }) = rollbacks.recv().await {
            let Some(p) = presence.upgrade() else { return };
            if let Err(e) = p.plugin_changed(slot, &sha256, None).await {
                tracing::error!(%slot, %sha256, error = %e, "could not tell the cluster of an automatic rollback");
            }
        }
    }

    /// Serves what another node installed or rolled back.
    pub(super) async fn follow_plugin(&self, slot: Slot, sha256: String) {
        if let Err(e) = follow_plugin(&self.policies, self.store(), slot, &sha256).await {
            tracing::error!(%slot, %sha256, error = %format_args!("{e:#}"), "could not follow the cluster's plugin");
        }
    }

    /// Serves every slot's component as the cluster does.
    pub(super) async fn follow_plugins(&self) {
        match self.store().active_plugins().await {
            Ok(active) => {
                for (slot, sha256) in active {
                    if let Ok(slot) = slot.parse() {
                        self.follow_plugin(slot, sha256).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the cluster's plugins failed"),
        }
    }
}

/// Makes `slot` serve the component with this hash, as another node does:
/// from the rollback history, the built-in, or the components stored in
/// the database.
pub async fn follow_plugin(
    policies: &Arc<Policies>,
    store: &Store,
    slot: Slot,
    sha256: &str,
) -> anyhow::Result<()> {
    if policies.slot(slot).sha256 == sha256 || policies.restore(slot, sha256).is_some() {
        return Ok(());
    }
    let builtin = slot.builtin_component();
    let bytes = if hex::encode(Sha256::digest(builtin)) == sha256 {
        builtin.to_vec()
    } else {
        store
            .plugin(sha256)
            .await?
            .with_context(|| format!("no stored component has sha256 {sha256}"))?
    };
    let policies = policies.clone();
    tokio::task::spawn_blocking(move || policies.install(slot, &bytes, CLUSTER_SOURCE.to_owned()))
        .await??;
    Ok(())
}
