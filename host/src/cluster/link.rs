//! The pub/sub link: one Redis connection kept subscribed to every channel
//! this node needs, reconnected with backoff, its messages handed up in the
//! order Redis delivered them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Cluster, Event, MAX_BACKOFF, Up, kind_of, timed};
use crate::metrics::METRICS;

/// Channels per SUBSCRIBE command when resubscribing everything.
const SUBSCRIBE_CHUNK: usize = 1_000;
/// A link that drops sooner than this after coming up keeps backing off, so
/// a Redis that accepts and then refuses (an ACL, say) is not hammered.
const STABLE_LINK: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

impl Cluster {
    /// Keeps one pub/sub connection subscribed to everything this node
    /// needs, reconnecting with backoff, and hands each message up in order.
    pub(super) async fn link(self: Arc<Self>, up: Up, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        let mut retry = false;
        loop {
            if retry {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            retry = true;
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                r = timed(self.client.get_async_pubsub()) => r,
            };
            let (mut sink, mut stream) = match pubsub {
                Ok(p) => p.split(),
                Err(e) => {
                    self.lost(&e);
                    continue;
                }
            };
            {
                let mut interest = self.interest.lock().await;
                let channels = interest.channels(&self.names, &self.node);
                let mut refused = None;
                for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                    if let Err(e) = timed(sink.subscribe(chunk)).await {
                        refused = Some(e);
                        break;
                    }
                }
                if let Some(e) = refused {
                    self.link_refused(&e);
                    continue;
                }
                interest.sink = Some(sink);
            }
            let linked_at = tokio::time::Instant::now();
            *self.link_error.lock() = None;
            self.link_up.store(true, Ordering::SeqCst);
            self.link_changed.notify_waiters();
            if !first {
                tracing::info!("Redis link restored");
                self.resync.store(true, Ordering::SeqCst);
                self.wake.notify_one();
                if !up.send(Event::Relinked).await {
                    return;
                }
            }
            first = false;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.relink.notified() => None,
                    m = stream.next() => m,
                };
                let Some(msg) = msg else { break };
                let payload: String = match msg.get_payload() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                match self.names.parse(msg.get_channel_name(), &payload) {
                    Some(m) => {
                        METRICS.cluster_received[kind_of(&m) as usize]
                            .fetch_add(1, Ordering::Relaxed);
                        if !up.send(Event::Message(m)).await {
                            return;
                        }
                    }
                    None => tracing::warn!(
                        channel = msg.get_channel_name(),
                        "unreadable cluster message"
                    ),
                }
            }
            self.link_up.store(false, Ordering::SeqCst);
            self.interest.lock().await.sink = None;
            tracing::error!("Redis link lost: serving local users only");
            if linked_at.elapsed() >= STABLE_LINK {
                backoff = FIRST_BACKOFF;
                retry = false;
            }
        }
    }

    /// Redis took the connection but refused the subscription: said once
    /// per distinct reason, and kept for `/healthz`.
    fn link_refused(&self, error: &anyhow::Error) {
        let reason = error.to_string();
        let mut last = self.link_error.lock();
        if last.as_deref() != Some(reason.as_str()) {
            tracing::error!(error = %reason, "Redis refused the subscription; retrying with backoff");
            *last = Some(reason);
        }
    }

    /// A subscription can look alive on a half-open connection: PING it.
    /// Not while (un)subscribing is under way: that tests the link anyway,
    /// and the lease heartbeat, which calls this, must never wait on it.
    pub(super) async fn check_link(&self) {
        let Ok(mut interest) = self.interest.try_lock() else {
            return;
        };
        let Some(sink) = interest.sink.as_mut() else {
            return;
        };
        if timed(sink.ping::<redis::Value>()).await.is_err() {
            tracing::warn!("the Redis subscription did not answer PING; reconnecting");
            interest.sink = None;
            self.link_up.store(false, Ordering::SeqCst);
            self.relink.notify_one();
        }
    }
}
