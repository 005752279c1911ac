//! Builds the server from a [`Config`] and runs it until a shutdown future
//! resolves: tests start it on `127.0.0.1:0`, `main` wires it to signals.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterConfig};
use crate::config::{Config, redact_url};
use crate::http::cors::Origins;
use crate::http::serve::serve;
use crate::http::{AppState, router};
use crate::policy::{Policies, PolicyConfig};
use crate::presence::plugins::follow_plugin;
use crate::presence::{Presence, PresenceTasks};
use crate::store::{Store, StoreOptions};
use crate::webhook::{WebhookTasks, Webhooks};

/// Compiled plugins are cached under the data directory here.
pub const PLUGIN_CACHE_DIR: &str = "plugin-cache";
/// How long startup waits for the Redis subscription before serving anyway.
pub const CLUSTER_JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open WebSocket sessions get to finish after shutdown begins.
pub const SESSION_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    tasks: PresenceTasks,
    /// Every WebSocket session holds a token, so shutdown can wait for them.
    sessions: TaskTracker,
    /// Watched for replacement policy components while serving.
    plugin_dir: Option<PathBuf>,
    /// Keeps the identity provider's key set fresh, when there is one.
    jwks_task: Option<JoinHandle<()>>,
    /// Sends status transitions to the chat backend, when it asked for them.
    webhook_tasks: Option<WebhookTasks>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let options = StoreOptions {
            schema: config.database_schema.clone(),
        };
        let store = Store::connect_with(&config.database_url, &options)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&config.database_url)))?;
        store.migrate().await.context("running migrations")?;
        if config.redis_url.is_none() {
            // Alone, nobody can be online before we start: clear what a crash left.
            store.reset_statuses().await.context("resetting statuses")?;
        }
        let cluster = match &config.redis_url {
            Some(url) => Some(join_cluster(&config, url, &store).await?),
            None => None,
        };
        let auth = Auth::from_config(&config)?;
        let policies = Policies::load(&PolicyConfig {
            plugin_dir: config.plugin_dir.clone(),
            call_deadline: config.plugin_call_deadline(),
            memory_limit: config.limits.plugin_memory_bytes,
            // The compile cache needs an absolute path; the data dir may be relative.
            cache_dir: Some(
                std::path::absolute(config.data_dir.join(PLUGIN_CACHE_DIR))
                    .context("resolving the data directory")?,
            ),
        })
        .context("loading policy plugins")?;
        let policies = Arc::new(policies);
        if cluster.is_some() {
            // Serve what the cluster serves, whatever this node's files say.
            for (slot, sha256) in store
                .active_plugins()
                .await
                .context("reading the cluster's plugins")?
            {
                let Ok(slot) = slot.parse() else { continue };
                if let Err(e) = follow_plugin(&policies, &store, slot, &sha256).await {
                    tracing::error!(%slot, %sha256, error = %format_args!("{e:#}"), "cannot serve the cluster's plugin");
                }
            }
        }
        let webhook = config.webhook()?;
        let (webhooks, webhook_tasks) = match webhook {
            Some(w) => {
                let (hooks, tasks) = Webhooks::start(w, store.clone());
                (Some(hooks), Some(tasks))
            }
            None => (None, None),
        };
        let (presence, tasks) =
            Presence::start(store, policies, config.limits.clone(), cluster, webhooks);
        if let Some(c) = &presence.cluster
            && !c.wait_up(CLUSTER_JOIN_TIMEOUT).await
        {
            tracing::warn!("not subscribed to Redis yet; serving local users until it is");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let sessions = TaskTracker::new();
        let shutdown = CancellationToken::new();
        // Fetched from the start, so the node is ready as soon as it can be.
        let jwks_task = auth
            .jwks()
            .map(|jwks| tokio::spawn(jwks.run(shutdown.clone())));
        if config.demo {
            crate::http::demo::check(&auth)?;
            crate::http::demo::seed(&presence)
                .await
                .context("setting up the demo users")?;
            tracing::warn!(
                "demo mode: /demo mints tokens for alice, bob and carol to anyone who asks; never expose it"
            );
        }
        let state = AppState {
            presence,
            auth: Arc::new(auth),
            shutdown,
            sessions: sessions.clone(),
            origins: Arc::new(Origins::from_config(&config.cors_origins)?),
            demo: config.demo,
        };
        Ok(Application {
            listener,
            state,
            tasks,
            sessions,
            plugin_dir: config.plugin_dir,
            jwks_task,
            webhook_tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn presence(&self) -> Arc<Presence> {
        self.state.presence.clone()
    }

    /// The routes this application serves, without the listener: for
    /// driving requests in process (the `rest_router` fuzz target).
    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then closes every connection,
    /// flushes pending `last_seen` writes and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            tasks,
            sessions,
            plugin_dir,
            jwks_task,
            webhook_tasks,
        } = self;
        let addr = listener.local_addr()?;
        let cancel = state.shutdown.clone();
        let presence = state.presence.clone();
        let watcher = plugin_dir
            .map(|dir| tokio::spawn(presence.clone().watch_plugin_dir(dir, cancel.clone())));
        tracing::info!(%addr, "presence listening");
        serve(listener, router(state), async move {
            shutdown.await;
            tracing::info!("shutting down");
            cancel.cancel();
        })
        .await;
        for task in watcher.into_iter().chain(jwks_task) {
            let _ = task.await;
        }
        sessions.close();
        if tokio::time::timeout(SESSION_DRAIN_TIMEOUT, sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the drain timeout");
        }
        tasks.shutdown(&presence).await;
        // After presence: its last transitions (everyone offline) are queued.
        if let Some(w) = webhook_tasks {
            w.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn join_cluster(config: &Config, url: &str, store: &Store) -> anyhow::Result<Arc<Cluster>> {
    if store.backend() != "postgres" {
        tracing::warn!("a cluster needs a postgres:// database that every node shares");
    }
    let settings = &config.cluster;
    let node_id = settings
        .node_id
        .clone()
        .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()));
    crate::config::check_node_id(&node_id)?;
    Cluster::connect(ClusterConfig {
        redis_url: url.to_owned(),
        prefix: settings.redis_prefix.clone(),
        node_id,
        lease: Duration::from_millis(settings.lease_ms),
        heartbeat: Duration::from_millis(settings.heartbeat_ms),
    })
    .await
    .with_context(|| format!("joining the cluster at {}", redact_url(url)))
}
