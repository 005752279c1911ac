//! Which Redis channels this node listens to, and why: the typing channel
//! of every conversation of a connected user, and the status channel of
//! everyone a connected user watches. A channel is subscribed with its
//! first reason and dropped with its last.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redis::aio::PubSubSink;
use uuid::Uuid;

use super::wire::Names;
use super::{Cluster, timed};
use crate::model::Ids;

/// The channels this node listens to, counted by the users who need them.
#[derive(Default)]
pub(super) struct Interest {
    /// The subscribing half of the pub/sub connection, while it is up.
    pub(super) sink: Option<PubSubSink>,
    users: HashMap<Uuid, (Ids, Ids)>,
    typing: HashMap<Uuid, u32>,
    status: HashMap<Uuid, u32>,
}

impl Interest {
    /// Replaces what `user` needs; returns the channels to subscribe and to
    /// unsubscribe, and the watched users nobody here watches any more.
    fn set(&mut self, names: &Names, user: Uuid, next: Option<(Ids, Ids)>) -> Diff {
        let mut diff = Diff::default();
        if let Some((conversations, watched)) = &next {
            for c in conversations.iter() {
                if bump(&mut self.typing, *c) {
                    diff.subscribe.push(names.typing(*c));
                }
            }
            for w in watched.iter() {
                if bump(&mut self.status, *w) {
                    diff.subscribe.push(names.status(*w));
                }
            }
        }
        let previous = match next {
            Some(n) => self.users.insert(user, n),
            None => self.users.remove(&user),
        };
        if let Some((conversations, watched)) = previous {
            for c in conversations.iter() {
                if drop_ref(&mut self.typing, *c) {
                    diff.unsubscribe.push(names.typing(*c));
                }
            }
            for w in watched.iter() {
                if drop_ref(&mut self.status, *w) {
                    diff.unsubscribe.push(names.status(*w));
                    diff.unwatched.push(*w);
                }
            }
        }
        diff
    }

    pub(super) fn channels(&self, names: &Names, node: &str) -> Vec<String> {
        let mut all = vec![names.bus(), names.node(node)];
        all.extend(self.typing.keys().map(|c| names.typing(*c)));
        all.extend(self.status.keys().map(|u| names.status(*u)));
        all
    }
}

#[derive(Default)]
struct Diff {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
    unwatched: Vec<Uuid>,
}

fn bump(refs: &mut HashMap<Uuid, u32>, key: Uuid) -> bool {
    let n = refs.entry(key).or_insert(0);
    *n += 1;
    *n == 1
}

fn drop_ref(refs: &mut HashMap<Uuid, u32>, key: Uuid) -> bool {
    match refs.get_mut(&key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            refs.remove(&key);
            true
        }
        None => false,
    }
}

impl Cluster {
    /// Subscribes to what a newly connected `user` needs (their
    /// conversations' typing, their watched users' status); returns once
    /// Redis confirmed, so nothing published after is missed.
    /// Only if `still_here` says so once the subscriptions are locked, so a
    /// user who left meanwhile leaves nothing subscribed.
    pub async fn track(
        &self,
        user: Uuid,
        conversations: Ids,
        watched: Ids,
        still_here: impl Fn() -> bool,
    ) -> Vec<Uuid> {
        self.set_interest(user, Some((conversations, watched)), still_here)
            .await
    }

    /// `user` left this node (if `still_gone` says so once the subscriptions
    /// are locked, so a reconnect racing this keeps its own); returns the
    /// watched users nobody here watches now.
    pub async fn untrack(&self, user: Uuid, still_gone: impl Fn() -> bool) -> Vec<Uuid> {
        self.set_interest(user, None, still_gone).await
    }

    async fn set_interest(
        &self,
        user: Uuid,
        next: Option<(Ids, Ids)>,
        proceed: impl Fn() -> bool,
    ) -> Vec<Uuid> {
        let mut interest = self.interest.lock().await;
        if !proceed() {
            return Vec::new();
        }
        let diff = interest.set(&self.names, user, next);
        if let Some(sink) = interest.sink.as_mut() {
            let mut ok = true;
            if !diff.subscribe.is_empty() {
                ok &= timed(sink.subscribe(&diff.subscribe)).await.is_ok();
            }
            if ok && !diff.unsubscribe.is_empty() {
                ok &= timed(sink.unsubscribe(&diff.unsubscribe)).await.is_ok();
            }
            if !ok {
                // The link task resubscribes everything when it reconnects.
                tracing::warn!("subscribing failed; dropping the Redis link");
                interest.sink = None;
                self.link_up.store(false, Ordering::SeqCst);
            }
        }
        diff.unwatched
    }

    /// The watched users this node's watchers hear about.
    pub async fn watched(&self) -> Vec<Uuid> {
        self.interest.lock().await.status.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_subscribed_once_and_dropped_with_its_last_user() {
        let names = Names::new("p");
        let mut interest = Interest::default();
        let (c, w) = (Uuid::new_v4(), Uuid::new_v4());
        let need = || (Ids::from(vec![c]), Ids::from(vec![w]));
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let d = interest.set(&names, ann, Some(need()));
        assert_eq!(d.subscribe, vec![names.typing(c), names.status(w)]);
        assert!(interest.set(&names, bob, Some(need())).subscribe.is_empty());
        let d = interest.set(&names, ann, Some(need()));
        assert!(
            d.subscribe.is_empty() && d.unsubscribe.is_empty(),
            "a refresh changes nothing"
        );
        assert!(interest.set(&names, ann, None).unsubscribe.is_empty());
        let d = interest.set(&names, bob, None);
        assert_eq!(d.unsubscribe, vec![names.typing(c), names.status(w)]);
        assert_eq!(d.unwatched, vec![w]);
    }
}
