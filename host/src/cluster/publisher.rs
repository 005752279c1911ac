//! Publishing: messages are queued without waiting (bounded, counted when
//! dropped) and one task publishes them in order, a pipeline per batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cluster, timed};
use crate::metrics::{ClusterKind, METRICS};

/// Messages per pipeline.
const BATCH: usize = 256;

impl Cluster {
    /// Queues a message; dropped (and counted) while Redis is down or the
    /// outbox is full, where local delivery goes on without it. A node whose
    /// subscription is down still publishes: others hear it.
    pub fn publish(&self, kind: ClusterKind, channel: String, payload: String) {
        if !self.redis_up.load(Ordering::SeqCst) {
            METRICS.cluster_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.outbox.try_send((channel, payload)) {
            Ok(()) => METRICS.cluster_published[kind as usize].fetch_add(1, Ordering::Relaxed),
            Err(_) => METRICS.cluster_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Publishes queued messages in order, a pipeline per batch.
    pub(super) async fn publisher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, String)>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                _ = stop.cancelled() => return,
                n = rx.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for (channel, payload) in batch.drain(..) {
                pipe.publish(channel, payload).ignore();
            }
            let mut conn = self.conn.clone();
            if let Err(e) = timed(pipe.query_async::<()>(&mut conn)).await {
                METRICS
                    .cluster_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.lost(&e);
            }
        }
    }
}
