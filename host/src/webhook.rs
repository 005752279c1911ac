//! Webhooks to the chat backend: every status transition a watcher would
//! see (online, away, offline) is POSTed to `PRESENCE_WEBHOOK_URL`, so the
//! backend can, say, send a push notification instead of a message to a
//! user who just went offline.
//!
//! A transition is written to the database outbox before the first attempt
//! (the writer task, a few milliseconds behind), then sent in batches of up
//! to [`BATCH`] events, or what gathered within [`BATCH_WINDOW`], signed
//! with HMAC-SHA256. Delivery is at least once: any answer but 2xx, or none
//! within [`SEND_TIMEOUT`], is retried with the same event ids after a
//! backoff doubling from 1 s to 5 min, and a user's events go out in order.
//! In a cluster each node writes the transitions it alone observed, and
//! claims events from the shared outbox one node at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::config::WebhookConfig;
use crate::metrics::METRICS;
use crate::model::{Status, Transition};
use crate::protocol::{ser_opt_time, ser_time};
use crate::store::{OutboxEvent, Store};

/// Events per POST.
pub const BATCH: usize = 100;
/// How long events gather before a POST that is not full.
pub const BATCH_WINDOW: Duration = Duration::from_secs(1);
/// A receiver that has not answered by then has failed the attempt.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry waits this long; each next one twice as long …
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// … up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Events the outbox holds at most; past it new transitions are dropped
/// (counted in `presence_webhook_dropped_total`, and logged).
pub const MAX_OUTBOX: u64 = 100_000;
/// Transitions waiting to be written to the outbox.
const QUEUE: usize = 10_000;
/// Writes of the last events tried at shutdown before giving up loudly.
const SHUTDOWN_WRITE_ATTEMPTS: u32 = 5;
/// A node that claimed events but went silent gives them up after this.
const CLAIM_LEASE: Duration = Duration::from_secs(15);

/// The body of one POST.
#[derive(Serialize)]
struct Batch {
    events: Vec<EventJson>,
}

#[derive(Serialize)]
struct EventJson {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: Uuid,
    #[serde(serialize_with = "ser_time")]
    timestamp: chrono::DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    last_seen: Option<chrono::DateTime<Utc>>,
}

/// The event type of a status.
fn kind(status: Status) -> &'static str {
    match status {
        Status::Online => "user.online",
        Status::Away => "user.away",
        Status::Offline => "user.offline",
    }
}

/// `v1=` and the lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sending side: what presence hands transitions to.
pub struct Webhooks {
    queue: mpsc::Sender<Transition>,
    /// Woken when enough events wait for a full batch.
    full: Notify,
    /// Transitions handed over since the last batch went out.
    fresh: AtomicU64,
    /// Events in the outbox, as last counted (the writer adds what it wrote).
    backlog: Arc<AtomicU64>,
    /// The bound was reached; said once in the log until it clears.
    at_bound: AtomicBool,
}

/// The writer and the sender; stopped by [`WebhookTasks::shutdown`].
pub struct WebhookTasks {
    stop: CancellationToken,
    writer: JoinHandle<()>,
    sender: JoinHandle<()>,
}

impl Webhooks {
    pub fn start(config: WebhookConfig, store: Store) -> (Arc<Webhooks>, WebhookTasks) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let hooks = Arc::new(Webhooks {
            queue,
            full: Notify::new(),
            fresh: AtomicU64::new(0),
            backlog: Arc::default(),
            at_bound: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let writer = tokio::spawn(write(
            rx,
            store.clone(),
            hooks.backlog.clone(),
            stop.clone(),
        ));
        let sender = tokio::spawn(hooks.clone().send(config, http, store, stop.clone()));
        (
            hooks.clone(),
            WebhookTasks {
                stop,
                writer,
                sender,
            },
        )
    }

    /// A transition to report. Never waits: past the bounds it is dropped,
    /// counted and logged.
    pub fn push(&self, transition: Transition) {
        let full = self.backlog.load(Ordering::Relaxed) >= MAX_OUTBOX;
        if full || self.queue.try_send(transition).is_err() {
            METRICS.webhook_dropped.fetch_add(1, Ordering::Relaxed);
            if !self.at_bound.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    bound = MAX_OUTBOX,
                    "the webhook outbox is full: transitions are dropped until the receiver catches up"
                );
            }
            return;
        }
        if self.fresh.fetch_add(1, Ordering::Relaxed) + 1 >= BATCH as u64 {
            self.full.notify_one();
        }
    }

    /// Sends what is due, batch after batch, until `stop`.
    async fn send(
        self: Arc<Self>,
        config: WebhookConfig,
        http: reqwest::Client,
        store: Store,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.full.notified() => {}
                _ = tokio::time::sleep(BATCH_WINDOW) => {}
            }
            self.fresh.store(0, Ordering::Relaxed);
            match store.outbox_len().await {
                Ok(n) => {
                    self.backlog.store(n, Ordering::Relaxed);
                    METRICS.webhook_backlog.store(n, Ordering::Relaxed);
                    if n < MAX_OUTBOX && self.at_bound.swap(false, Ordering::Relaxed) {
                        tracing::info!("the webhook outbox has room again");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the webhook outbox failed");
                    continue;
                }
            }
            // Everything due now, a batch at a time.
            loop {
                let events = match store.outbox_claim(BATCH, CLAIM_LEASE).await {
                    Ok(events) if !events.is_empty() => events,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming webhook events failed");
                        break;
                    }
                };
                let delivered = tokio::select! {
                    _ = stop.cancelled() => return,
                    d = deliver(&http, &config, &events) => d,
                };
                if !self.settle(&store, &events, delivered).await {
                    break;
                }
            }
        }
    }

    /// Records the outcome of a POST; false when the outbox is not
    /// reachable or the receiver failed (try again later).
    async fn settle(&self, store: &Store, events: &[OutboxEvent], delivered: bool) -> bool {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let attempts = events.iter().map(|e| e.attempts).max().unwrap_or(0);
        if attempts > 0 {
            METRICS.webhook_retries.fetch_add(1, Ordering::Relaxed);
        }
        if delivered {
            let now = Utc::now();
            for e in events {
                let waited = (now - e.created).to_std().unwrap_or_default();
                METRICS.webhook_latency.observe(waited);
            }
            METRICS
                .webhook_delivered
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            if let Err(e) = store.outbox_done(&seqs).await {
                // They go out again once their claim lapses: at least once.
                tracing::warn!(error = %e, "recording delivered webhook events failed");
                return false;
            }
            self.backlog.fetch_sub(
                (seqs.len() as u64).min(self.backlog.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            return true;
        }
        METRICS.webhook_failures.fetch_add(1, Ordering::Relaxed);
        let next = Utc::now() + backoff(attempts);
        if let Err(e) = store.outbox_retry(&seqs, next).await {
            tracing::warn!(error = %e, "scheduling a webhook retry failed");
        }
        false
    }
}

/// Writes handed-over transitions to the outbox; a failed write is retried
/// (the queue holds what arrives meanwhile). On `stop`, what is queued is
/// written before it returns.
async fn write(
    mut rx: mpsc::Receiver<Transition>,
    store: Store,
    backlog: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n == 0,
            _ = stop.cancelled() => true,
        };
        if stopping {
            while let Ok(t) = rx.try_recv() {
                batch.push(t);
            }
        }
        for events in batch.chunks(BATCH) {
            let mut tries = 0;
            while let Err(e) = store.outbox_push(events).await {
                tracing::warn!(error = %e, events = events.len(), "writing webhook events failed; retrying");
                tries += 1;
                if stopping && tries >= SHUTDOWN_WRITE_ATTEMPTS {
                    tracing::error!(events = events.len(), "webhook events lost at shutdown");
                    break;
                }
                tokio::time::sleep(FIRST_RETRY).await;
            }
            backlog.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        batch.clear();
        if stopping {
            return;
        }
    }
}

/// The wait after `attempts` failed attempts: 1 s doubling, at most 5 min.
pub fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(attempts))
        .min(MAX_RETRY)
}

/// POSTs one batch; true on a 2xx answer.
async fn deliver(http: &reqwest::Client, config: &WebhookConfig, events: &[OutboxEvent]) -> bool {
    let body = serde_json::to_vec(&Batch {
        events: events
            .iter()
            .map(|e| EventJson {
                id: e.id,
                kind: kind(e.status),
                user_id: e.user,
                timestamp: e.at,
                last_seen: e.last_seen,
            })
            .collect(),
    })
    .expect("events serialize");
    let timestamp = Utc::now().timestamp();
    let answer = http
        .post(&config.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Presence-Timestamp", timestamp.to_string())
        .header(
            "Presence-Signature",
            signature(&config.secret, timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!(status = %r.status(), events = events.len(), "the webhook receiver refused a batch; it will be retried");
            false
        }
        Err(e) => {
            let why = if e.is_timeout() {
                "no answer in time"
            } else {
                "unreachable"
            };
            tracing::warn!(error = %e, events = events.len(), "the webhook receiver is {why}; the batch will be retried");
            false
        }
    }
}

impl WebhookTasks {
    /// Call after presence has handed over its last transitions: they are
    /// written to the outbox (and sent after the next start if not before).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.sender.await;
        let _ = self.writer.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 does not cover this framing; the value is checked by a
        // receiver written against the README's snippet in the e2e tests.
        let s = signature("secret", 1_700_000_000, br#"{"events":[]}"#);
        assert!(s.starts_with("v1="));
        assert_eq!(s.len(), 3 + 64);
        assert_ne!(s, signature("secret", 1_700_000_001, br#"{"events":[]}"#));
    }

    #[tokio::test]
    async fn past_the_outbox_bound_transitions_are_dropped_and_counted() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let config = WebhookConfig {
            url: "http://127.0.0.1:9/never".into(),
            secret: "s".into(),
        };
        let (hooks, tasks) = Webhooks::start(config, store.clone());
        hooks.backlog.store(MAX_OUTBOX, Ordering::Relaxed);
        let dropped = METRICS.webhook_dropped.load(Ordering::Relaxed);
        let t = Transition {
            user: Uuid::new_v4(),
            status: Status::Online,
            at: Utc::now(),
            last_seen: None,
        };
        hooks.push(t);
        assert_eq!(METRICS.webhook_dropped.load(Ordering::Relaxed), dropped + 1);
        hooks.backlog.store(0, Ordering::Relaxed);
        hooks.push(t);
        tasks.shutdown().await;
        assert_eq!(
            store.outbox_len().await.unwrap(),
            1,
            "only the one under the bound"
        );
    }

    #[test]
    fn retries_double_from_one_second_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }
}
