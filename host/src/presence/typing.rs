//! Typing indicators. Each typer has a lease and a rate window: transitions
//! inside the window are coalesced (the latest state is broadcast when the
//! window opens), so a stop is never lost. Nothing here touches the database,
//! and an entry is removed as soon as nobody needs it.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;
use uuid::Uuid;

use std::sync::atomic::Ordering;

use super::Presence;
use super::directory::Profile;
use super::timers::TimerKey;
use crate::metrics::METRICS;
use crate::model::Ids;
use crate::policy::TypingStart;
use crate::protocol::{Frame, TypingSnapshot, UserTyping, frame};

struct Typer {
    user: Uuid,
    profile: Arc<Profile>,
    /// What the user last told us (or the lease decided).
    typing: bool,
    /// The policy chose not to announce this typing state.
    quiet: bool,
    /// What the other members last saw.
    shown: bool,
    lease_until: Instant,
    /// The rate window: no broadcast before this.
    window_until: Instant,
    rate_window: Duration,
    /// The node whose client sent the latest start (`None`: this one).
    origin: Option<Arc<str>>,
    /// That start's stamp: the latest start wins on every node, however the
    /// starts crossed between nodes.
    stamp: u64,
}

impl Typer {
    fn wants_shown(&self) -> bool {
        self.typing && !self.quiet
    }
}

struct Conversation {
    members: Ids,
    /// Typers in the order they were last shown as typing.
    typers: Vec<Typer>,
}

#[derive(Default)]
pub struct Typing {
    conversations: DashMap<Uuid, Conversation>,
    /// user → conversations where they have a typer entry.
    by_user: DashMap<Uuid, Vec<Uuid>>,
}

fn wall_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What happened to one typer when it was re-evaluated.
struct Outcome {
    broadcast: Option<bool>,
    next: Option<Instant>,
    remove: bool,
}

fn evaluate(t: &mut Typer, now: Instant) -> Outcome {
    if t.typing && now >= t.lease_until {
        t.typing = false;
    }
    let want = t.wants_shown();
    let mut broadcast = None;
    if want != t.shown && now >= t.window_until {
        t.shown = want;
        t.window_until = now + t.rate_window;
        broadcast = Some(want);
    }
    let mut next: Option<Instant> = None;
    let mut at = |i: Instant| next = Some(next.map_or(i, |n| n.min(i)));
    if t.typing {
        at(t.lease_until);
    }
    let idle = !t.typing && !t.shown;
    if want != t.shown || idle {
        at(t.window_until);
    }
    let remove = idle && now >= t.window_until;
    Outcome {
        broadcast,
        next: if remove { None } else { next },
        remove,
    }
}

impl Typing {
    /// `typing_start` from a member, through this node (`from` `None`) or
    /// another (its name and the start's stamp). Renewals extend the lease
    /// silently. Returns the stamp to publish, or `None` (and changes
    /// nothing) if `profile` is no longer a member.
    pub fn start(
        &self,
        p: &Presence,
        conversation: Uuid,
        profile: Arc<Profile>,
        members: Ids,
        from: Option<(Arc<str>, u64)>,
    ) -> Option<u64> {
        let now = Instant::now();
        let user = profile.id;
        // `members` was loaded before the caller awaited; the admin API may
        // have removed this user since, and the cache then knows better.
        let members = p.directory.cached_members(&conversation).unwrap_or(members);
        if members.binary_search(&user).is_err() {
            return None;
        }
        let mut conv = self
            .conversations
            .entry(conversation)
            .or_insert_with(|| Conversation {
                members: members.clone(),
                typers: Vec::new(),
            });
        conv.members = members;
        let idx = match conv.typers.iter().position(|t| t.user == user) {
            Some(i) => i,
            None => {
                conv.typers.push(Typer {
                    user,
                    profile: profile.clone(),
                    typing: false,
                    quiet: false,
                    shown: false,
                    lease_until: now,
                    window_until: now,
                    rate_window: Duration::ZERO,
                    origin: None,
                    stamp: 0,
                });
                self.by_user.entry(user).or_default().push(conversation);
                conv.typers.len() - 1
            }
        };
        let others = conv
            .typers
            .iter()
            .filter(|t| t.user != user && t.shown)
            .count();
        let renewal = conv.typers[idx].typing;
        let decision = p.policies.on_typing_start(TypingStart {
            member_count: conv.members.len() as u32,
            other_typers: others as u32,
            renewal,
        });
        let t = &mut conv.typers[idx];
        t.profile = profile;
        // Two nodes whose starts crossed agree on the later one (ties: each
        // keeps its own), so one of them always stops it when the user
        // leaves, instead of each waiting for the other.
        match from {
            None => {
                let floor = if renewal { t.stamp + 1 } else { 0 };
                t.stamp = wall_millis().max(floor);
                t.origin = None;
            }
            Some((node, stamp)) => {
                if !renewal || stamp > t.stamp {
                    t.stamp = stamp;
                    t.origin = Some(node);
                }
            }
        }
        let stamp = t.stamp;
        t.lease_until = now + decision.lease;
        t.rate_window = p.policies.typing_limits().rate_window;
        if !renewal {
            t.typing = true;
            t.quiet = !decision.broadcast;
        }
        self.settle(p, conversation, &mut conv, idx, now);
        Some(stamp)
    }

    /// The stamp of `user`'s latest start in `conversation` known here, as
    /// a start through this node publishes it.
    pub fn stamp(&self, conversation: Uuid, user: Uuid) -> Option<u64> {
        let conv = self.conversations.get(&conversation)?;
        conv.typers.iter().find(|t| t.user == user).map(|t| t.stamp)
    }

    /// `typing_stop`, a lapsed connection, or a sent message.
    pub fn stop(&self, p: &Presence, conversation: Uuid, user: Uuid) {
        let now = Instant::now();
        let Some(mut conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let Some(idx) = conv.typers.iter().position(|t| t.user == user) else {
            return;
        };
        conv.typers[idx].typing = false;
        self.settle(p, conversation, &mut conv, idx, now);
        drop(conv);
        self.forget_empty(conversation);
    }

    /// A typer's timer fired.
    pub fn on_timer(&self, p: &Presence, conversation: Uuid, user: Uuid) {
        let now = Instant::now();
        let Some(mut conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        let Some(idx) = conv.typers.iter().position(|t| t.user == user) else {
            return;
        };
        self.settle(p, conversation, &mut conv, idx, now);
        drop(conv);
        self.forget_empty(conversation);
    }

    /// Stops `user`'s typing that came through `origin` (`None`: this node,
    /// whose last connection of theirs closed); returns where.
    pub fn stop_from(&self, p: &Presence, user: Uuid, origin: Option<&str>) -> Vec<Uuid> {
        let conversations = self
            .by_user
            .get(&user)
            .map(|c| c.clone())
            .unwrap_or_default();
        let mut stopped = Vec::new();
        for c in conversations {
            let from_there = self.conversations.get(&c).is_some_and(|conv| {
                conv.typers
                    .iter()
                    .any(|t| t.user == user && t.typing && t.origin.as_deref() == origin)
            });
            if from_there {
                self.stop(p, c, user);
                stopped.push(c);
            }
        }
        stopped
    }

    /// Stops all typing that came through `node` (it is gone).
    pub fn stop_node(&self, p: &Presence, node: &str) {
        let typers: Vec<Uuid> = self
            .conversations
            .iter()
            .flat_map(|c| {
                c.typers
                    .iter()
                    .filter(|t| t.origin.as_deref() == Some(node))
                    .map(|t| t.user)
                    .collect::<Vec<_>>()
            })
            .collect();
        for user in typers {
            self.stop_from(p, user, Some(node));
        }
    }

    /// The member set changed: typers who left stop at once, without waiting
    /// for their rate window, and only the remaining members hear it.
    pub fn members_changed(&self, p: &Presence, conversation: Uuid, members: Ids) {
        let Some(mut conv) = self.conversations.get_mut(&conversation) else {
            return;
        };
        conv.members = members.clone();
        while let Some(idx) = conv
            .typers
            .iter()
            .position(|t| members.binary_search(&t.user).is_err())
        {
            let t = conv.typers.remove(idx);
            p.timers.cancel(TimerKey::Typing {
                conversation,
                user: t.user,
            });
            self.unindex(t.user, conversation);
            if t.shown {
                broadcast(p, conversation, &conv, &t, false);
            }
        }
        drop(conv);
        self.forget_empty(conversation);
    }

    /// Who is shown typing in `conversation`, `viewer` excluded.
    pub fn snapshot(&self, conversation: Uuid, viewer: Uuid) -> Option<TypingSnapshot> {
        let conv = self.conversations.get(&conversation)?;
        let user_ids: Vec<Uuid> = conv
            .typers
            .iter()
            .filter(|t| t.shown && t.user != viewer)
            .map(|t| t.user)
            .collect();
        (!user_ids.is_empty()).then_some(TypingSnapshot {
            conversation_id: conversation,
            user_ids,
        })
    }

    /// Typer entries alive now (for tests and metrics: must fall back to zero).
    pub fn entries(&self) -> usize {
        self.conversations.iter().map(|c| c.typers.len()).sum()
    }

    /// Nothing is held: no conversation, no typer, no index entry (for tests).
    pub fn is_empty(&self) -> bool {
        self.conversations.is_empty() && self.by_user.is_empty()
    }

    fn settle(
        &self,
        p: &Presence,
        conversation: Uuid,
        conv: &mut Conversation,
        idx: usize,
        now: Instant,
    ) {
        let out = evaluate(&mut conv.typers[idx], now);
        let user = conv.typers[idx].user;
        let key = TimerKey::Typing { conversation, user };
        match out.next {
            Some(at) => p.timers.set(key, at),
            None => p.timers.cancel(key),
        }
        if let Some(is_typing) = out.broadcast {
            if is_typing {
                // Shown typers are listed in the order they started.
                let t = conv.typers.remove(idx);
                conv.typers.push(t);
            }
            let pos = conv
                .typers
                .iter()
                .position(|t| t.user == user)
                .expect("typer present");
            broadcast(p, conversation, conv, &conv.typers[pos], is_typing);
        }
        if out.remove {
            conv.typers.retain(|t| t.user != user);
            self.unindex(user, conversation);
        }
    }

    fn unindex(&self, user: Uuid, conversation: Uuid) {
        if let dashmap::Entry::Occupied(mut e) = self.by_user.entry(user) {
            e.get_mut().retain(|c| *c != conversation);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    fn forget_empty(&self, conversation: Uuid) {
        self.conversations
            .remove_if(&conversation, |_, c| c.typers.is_empty());
    }
}

/// Sends `user_typing` to every member but the subject. Recipients who are
/// not typing share one payload per locale; each typing recipient gets its
/// own (it excludes them from `typing_user_ids`).
fn broadcast(
    p: &Presence,
    conversation: Uuid,
    conv: &Conversation,
    subject: &Typer,
    is_typing: bool,
) {
    let started = std::time::Instant::now();
    let mut delivered = 0;
    let mut payloads: Vec<(Option<Uuid>, Arc<str>, Frame)> = Vec::new();
    for member in conv.members.iter() {
        if *member == subject.user {
            continue;
        }
        let typing_member = conv.typers.iter().any(|t| t.user == *member && t.shown);
        let key = typing_member.then_some(*member);
        p.registry.for_each_session(member, |session| {
            let cached = payloads
                .iter()
                .find(|(k, l, _)| *k == key && **l == *session.locale);
            let f = match cached {
                Some((_, _, f)) => f.clone(),
                None => {
                    let f = typing_frame(
                        p,
                        conversation,
                        conv,
                        subject,
                        is_typing,
                        key,
                        &session.locale,
                    );
                    payloads.push((key, session.locale.clone(), f.clone()));
                    f
                }
            };
            session.send(f);
            delivered += 1;
        });
    }
    METRICS
        .typing_deliveries
        .fetch_add(delivered, Ordering::Relaxed);
    METRICS.typing_fanout.observe(started.elapsed());
}

fn typing_frame(
    p: &Presence,
    conversation: Uuid,
    conv: &Conversation,
    subject: &Typer,
    is_typing: bool,
    recipient: Option<Uuid>,
    locale: &str,
) -> Frame {
    let shown: Vec<&Typer> = conv
        .typers
        .iter()
        .filter(|t| t.shown && Some(t.user) != recipient)
        .collect();
    let ids: Vec<Uuid> = shown.iter().map(|t| t.user).collect();
    let names: Vec<&str> = shown.iter().map(|t| t.profile.name()).collect();
    let text = p.policies.format_typers(&names, locale);
    frame(
        "user_typing",
        UserTyping {
            conversation_id: conversation,
            user_id: subject.user,
            username: subject.profile.username.as_deref(),
            display_name: subject.profile.display_name.as_deref(),
            is_typing,
            typing_user_ids: &ids,
            text: &text,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typer(now: Instant) -> Typer {
        Typer {
            user: Uuid::nil(),
            profile: Arc::new(Profile {
                id: Uuid::nil(),
                username: None,
                display_name: None,
                privacy: Default::default(),
                last_seen: None,
            }),
            typing: true,
            quiet: false,
            shown: false,
            lease_until: now + Duration::from_secs(5),
            window_until: now,
            rate_window: Duration::from_secs(1),
            origin: None,
            stamp: 0,
        }
    }

    #[test]
    fn a_stop_inside_the_rate_window_is_delivered_when_it_opens() {
        let now = Instant::now();
        let mut t = typer(now);
        assert_eq!(evaluate(&mut t, now).broadcast, Some(true));
        t.typing = false;
        let out = evaluate(&mut t, now + Duration::from_millis(100));
        assert_eq!(out.broadcast, None);
        assert_eq!(out.next, Some(now + Duration::from_secs(1)));
        let out = evaluate(&mut t, now + Duration::from_secs(1));
        assert_eq!(out.broadcast, Some(false));
        assert!(!out.remove, "kept until its own window passes");
        assert!(evaluate(&mut t, now + Duration::from_secs(2)).remove);
    }

    #[test]
    fn start_stop_start_inside_the_window_broadcasts_nothing_more() {
        let now = Instant::now();
        let mut t = typer(now);
        evaluate(&mut t, now);
        t.typing = false;
        evaluate(&mut t, now + Duration::from_millis(100));
        t.typing = true;
        let out = evaluate(&mut t, now + Duration::from_secs(1));
        assert_eq!(out.broadcast, None);
        assert_eq!(out.next, Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn the_lease_ends_typing_by_itself() {
        let now = Instant::now();
        let mut t = typer(now);
        evaluate(&mut t, now);
        let out = evaluate(&mut t, now + Duration::from_secs(5));
        assert_eq!(out.broadcast, Some(false));
    }
}
