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

impl Cluster {
    /// Keeps one pub/sub connection subscribed to everything this node
    /// needs, reconnecting with backoff, and hands each message up in order.
    pub(super) async fn link(self: Arc<Self>, up: Up, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        loop {
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                r = timed(self.client.get_async_pubsub()) => r,
            };
            let (mut sink, mut stream) = match pubsub {
                Ok(p) => p.split(),
                Err(e) => {
                    self.lost(&e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            {
                let mut interest = self.interest.lock().await;
                let channels = interest.channels(&self.names, &self.node);
                let mut ok = true;
                for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                    if timed(sink.subscribe(chunk)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    continue;
                }
                interest.sink = Some(sink);
            }
            backoff = Duration::from_millis(50);
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
        }
    }

    /// A subscription can look alive on a half-open connection: PING it.
    pub(super) async fn check_link(&self) {
        let mut interest = self.interest.lock().await;
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
