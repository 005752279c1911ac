//! What an operator changes: the component serving a policy slot. An
//! install is validated before it swaps in; in a cluster the component is
//! stored where every node can fetch it, and announced, so every node
//! serves the same one.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Presence;
use crate::policy::{Policies, Slot, SlotInfo, UPLOAD_SOURCE};
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

impl Presence {
    /// Validates `bytes` for `slot` and swaps it in, here and on every node.
    pub async fn install_plugin(&self, slot: Slot, bytes: Bytes) -> Result<SlotInfo, PluginChange> {
        let policies = self.policies.clone();
        // Compiling a component takes a while: off the async workers.
        let (installed, bytes) = tokio::task::spawn_blocking(move || {
            let installed = policies.install(slot, &bytes, UPLOAD_SOURCE.to_owned());
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
