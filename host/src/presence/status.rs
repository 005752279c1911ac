//! Online, away and offline. A user is online while any connection is open;
//! the last one closing starts a grace period, after which they go offline,
//! `last_seen` is written and watchers hear it. Idle users become away.

use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use std::sync::atomic::Ordering;

use super::Presence;
use super::directory::Profile;
use super::registry::{SessionHandle, UserEntry};
use super::timers::TimerKey;
use super::view::status_object;
use crate::auth;
use crate::metrics::METRICS;
use crate::model::{Live, Status, StatusChange, Transition};
use crate::policy::{LastSeenView, WatcherScope};
use crate::protocol::{Frame, Ready, StatusObject, TimeString, UserStatus, frame};
use crate::store;

/// Watchers decided between two yields of a status fan-out.
const YIELD_EVERY: usize = 256;
/// A status fan-out the store failed is tried again after this, doubling…
const ANNOUNCE_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
/// …up to this…
const ANNOUNCE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// …for this long, unless a newer change of the same user was told first.
const ANNOUNCE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(300);

impl Presence {
    /// Registers a new connection. Returns its handle and the `ready` frame,
    /// which the session must send before anything queued on the handle.
    pub async fn connect(
        self: &Arc<Self>,
        user: &auth::User,
        handle: SessionHandle,
    ) -> store::Result<(Arc<Profile>, Frame)> {
        let profile = self.directory.ensure_profile(user).await?;
        self.directory.load_relations(user.id).await?;
        let now = Instant::now();
        let now_at = Utc::now();
        let first = {
            let mut entry = self
                .registry
                .users
                .entry(user.id)
                .or_insert_with(|| UserEntry {
                    sessions: Vec::new(),
                    status: Status::Online,
                    last_activity: now,
                    last_activity_at: now_at,
                    disconnected_at: None,
                });
            let returning = entry.disconnected_at.take().is_some();
            let first = entry.sessions.is_empty() && !returning;
            entry.sessions.push(handle);
            if returning {
                self.timers.cancel(TimerKey::Grace(user.id));
                // The idle clock was stopped with the last connection.
                self.schedule_idle_check(user.id, entry.last_activity);
            }
            first.then(|| self.next_status_seq())
        };
        if let Some(seq) = first {
            self.schedule_idle_check(user.id, now);
            // Subscribed before `ready` is read, so nothing falls in between.
            self.track(user.id).await?;
            self.changed(
                user.id,
                StatusChange {
                    seq,
                    status: Status::Online,
                    at: now_at,
                    last_seen: None,
                },
            );
        }
        let ready = self.ready(&profile).await?;
        Ok((profile, ready))
    }

    async fn ready(&self, profile: &Profile) -> store::Result<Frame> {
        let watched = self.watched_by(profile.id).await?;
        let profiles = self.directory.profiles(&watched).await?;
        let subjects: Vec<&Profile> = watched
            .iter()
            .filter_map(|id| profiles.get(id).map(|p| &**p))
            .collect();
        let contacts = self.status_objects_told(profile, &subjects, true).await?;
        let typing: Vec<_> = self
            .directory
            .conversations_of(profile.id)
            .await?
            .iter()
            .filter_map(|c| self.typing.snapshot(*c, profile.id))
            .collect();
        let session_id = Uuid::new_v4();
        Ok(frame(
            "ready",
            Ready {
                user_id: profile.id,
                session_id,
                heartbeat_interval_ms: self.policies.status_config().heartbeat_interval.as_millis()
                    as u64,
                contacts: &contacts,
                typing: &typing,
            },
        ))
    }

    /// The users `user` watches: their contacts (plus co-members when the
    /// status policy says so).
    pub(super) async fn watched_by(&self, user: Uuid) -> store::Result<Vec<Uuid>> {
        let contacts = self.directory.contacts_of(user).await?;
        self.with_co_members(user, &contacts).await
    }

    /// The users who hear about `subject`: those who have them as a contact
    /// (plus co-members when the status policy says so).
    async fn watchers(&self, subject: Uuid) -> store::Result<Vec<Uuid>> {
        let watchers = self.directory.watchers_of(subject).await?;
        self.with_co_members(subject, &watchers).await
    }

    async fn with_co_members(&self, user: Uuid, ids: &[Uuid]) -> store::Result<Vec<Uuid>> {
        let mut ids = ids.to_vec();
        if self.policies.status_config().watchers == WatcherScope::ContactsAndCoMembers {
            ids.extend(self.co_members(user).await?);
            ids.sort_unstable();
            ids.dedup();
        }
        ids.retain(|id| *id != user);
        Ok(ids)
    }

    async fn co_members(&self, user: Uuid) -> store::Result<Vec<Uuid>> {
        let mut ids = Vec::new();
        for c in self.directory.conversations_of(user).await?.iter() {
            ids.extend(self.directory.members(*c).await?.iter().copied());
        }
        Ok(ids)
    }

    /// A connection closed. The last one stops the user's typing at once and
    /// starts the grace period.
    pub fn disconnect(self: &Arc<Self>, user: Uuid, session: u64) {
        let last = {
            let Some(mut entry) = self.registry.users.get_mut(&user) else {
                return;
            };
            entry.sessions.retain(|s| s.id != session);
            if entry.sessions.is_empty() && entry.disconnected_at.is_none() {
                entry.disconnected_at = Some(Utc::now());
                true
            } else {
                false
            }
        };
        if last {
            self.stop_typing_from_here(user);
            let grace = self.policies.status_config().offline_grace;
            self.timers.cancel(TimerKey::Away(user));
            self.timers
                .set(TimerKey::Grace(user), Instant::now() + grace);
        }
    }

    pub(super) fn grace_expired(self: &Arc<Self>, user: Uuid) {
        let mut seq = 0;
        let removed = self.registry.users.remove_if(&user, |_, e| {
            let gone = e.sessions.is_empty() && e.disconnected_at.is_some();
            if gone {
                seq = self.next_status_seq();
            }
            gone
        });
        let Some((_, entry)) = removed else { return };
        let at = entry.disconnected_at.expect("checked above");
        self.directory.set_last_seen(&user, at);
        self.write_behind.record(user, Status::Offline, at);
        self.write_behind.kick();
        self.untrack(user);
        self.changed(
            user,
            StatusChange {
                seq,
                status: Status::Offline,
                at,
                last_seen: Some(at),
            },
        );
    }

    /// The user did something: resets the idle clock; brings them back from away.
    pub fn activity(self: &Arc<Self>, user: Uuid) {
        let now = Instant::now();
        let now_at = Utc::now();
        let seq = {
            let Some(mut e) = self.registry.users.get_mut(&user) else {
                return;
            };
            e.last_activity = now;
            e.last_activity_at = now_at;
            let back = e.status == Status::Away && !e.sessions.is_empty();
            if !back {
                return;
            }
            e.status = Status::Online;
            self.next_status_seq()
        };
        self.schedule_idle_check(user, now);
        self.changed(
            user,
            StatusChange {
                seq,
                status: Status::Online,
                at: now_at,
                last_seen: None,
            },
        );
    }

    /// `set_status away`: away until the next activity.
    pub fn set_away(self: &Arc<Self>, user: Uuid) {
        let change = {
            let Some(mut e) = self.registry.users.get_mut(&user) else {
                return;
            };
            if e.status == Status::Away || e.sessions.is_empty() {
                return;
            }
            self.go_away(&mut e)
        };
        self.timers.cancel(TimerKey::Away(user));
        self.changed(user, change);
    }

    fn schedule_idle_check(&self, user: Uuid, from: Instant) {
        let away_after = self.policies.status_config().away_after;
        self.timers.set(TimerKey::Away(user), from + away_after);
    }

    pub(super) fn idle_check(self: &Arc<Self>, user: Uuid) {
        let away_after = self.policies.status_config().away_after;
        let now = Instant::now();
        let change = {
            let Some(mut e) = self.registry.users.get_mut(&user) else {
                return;
            };
            if e.status != Status::Online || e.sessions.is_empty() {
                return;
            }
            let due = e.last_activity + away_after;
            if now < due {
                self.timers.set(TimerKey::Away(user), due);
                return;
            }
            self.go_away(&mut e)
        };
        self.changed(user, change);
    }

    /// Marks a connected user away (call with their entry locked); their
    /// last seen is their last activity.
    fn go_away(&self, e: &mut UserEntry) -> StatusChange {
        e.status = Status::Away;
        StatusChange {
            seq: self.next_status_seq(),
            status: Status::Away,
            at: Utc::now(),
            last_seen: Some(e.last_activity_at),
        }
    }

    /// Orders status changes across users and tasks (see [`StatusChange::seq`]):
    /// microseconds of wall time, at least one more than the last, so that
    /// they also order against the sequence numbers a cluster's Redis gives.
    fn next_status_seq(&self) -> u64 {
        let now = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0);
        let mut last = self.status_seq.load(Ordering::SeqCst);
        loop {
            let next = now.max(last + 1);
            match self
                .status_seq
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A status change made on this node. Alone, its watchers hear it now;
    /// in a cluster it goes to Redis, which announces it to every node if
    /// the user's cluster-wide status changed (or, with Redis down, local
    /// watchers hear it now and Redis learns it later).
    fn changed(self: &Arc<Self>, user: Uuid, change: StatusChange) {
        match &self.cluster {
            Some(c) => {
                let up = c.is_up();
                if !up {
                    self.spawn_announce(user, change);
                }
                c.record(user, change, !up);
            }
            None => {
                self.report(transition(user, change));
                self.spawn_announce(user, change);
            }
        }
    }

    /// Hands a status change of the whole deployment to the webhook.
    pub(super) fn report(&self, t: Transition) {
        if let Some(hooks) = &self.webhooks {
            hooks.push(t);
        }
    }

    /// Redis found `user` offline on every node as of `at`: record it.
    pub(super) fn offline_everywhere(&self, user: Uuid, at: DateTime<Utc>) {
        self.directory.set_last_seen(&user, at);
        self.write_behind.record(user, Status::Offline, at);
        self.write_behind.kick();
    }

    pub(super) fn spawn_announce(self: &Arc<Self>, subject: Uuid, change: StatusChange) {
        self.spawn_announce_as(subject, change, false);
    }

    /// `replay`: a node republished its state; dropped here if the
    /// watchers were last told this very status.
    pub(super) fn spawn_announce_as(
        self: &Arc<Self>,
        subject: Uuid,
        change: StatusChange,
        replay: bool,
    ) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let mut wait = ANNOUNCE_RETRY_FIRST;
            let started = Instant::now();
            loop {
                let Err(e) = this.announce(subject, change, replay).await else {
                    return;
                };
                METRICS
                    .status_fanout_failures
                    .fetch_add(1, Ordering::Relaxed);
                if this
                    .announced
                    .get(&subject)
                    .is_some_and(|last| last.0 > change.seq)
                {
                    return; // A newer change was told meanwhile.
                }
                if started.elapsed() >= ANNOUNCE_RETRY_FOR {
                    tracing::error!(error = %e, %subject, "status fan-out failed; gave up");
                    return;
                }
                tracing::warn!(error = %e, %subject, retry_in = ?wait, "status fan-out failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = this.stopping.cancelled() => return,
                }
                wait = (wait * 2).min(ANNOUNCE_RETRY_MAX);
            }
        });
    }

    /// Sends `user_status` to every connected watcher, each through the
    /// privacy policy; watchers who see the same thing share one payload.
    async fn announce(
        &self,
        subject: Uuid,
        change: StatusChange,
        replay: bool,
    ) -> store::Result<()> {
        let started = std::time::Instant::now();
        let Some(subject_profile) = self.directory.profile(subject).await? else {
            return Ok(());
        };
        let watchers: Vec<Uuid> = self
            .watchers(subject)
            .await?
            .into_iter()
            .filter(|w| self.registry.is_connected(w))
            .collect();
        if watchers.is_empty() {
            // Nobody here to tell; remembered so a watcher who connects
            // later is not told it twice.
            drop(self.note_announced(subject, change, replay));
            return Ok(());
        }
        let viewers = self.directory.profiles(&watchers).await?;
        let mut payloads: Vec<(StatusObject, Frame)> = Vec::new();
        let mut deliveries: Vec<(Uuid, Frame)> = Vec::with_capacity(watchers.len());
        for (i, w) in watchers.iter().enumerate() {
            if i > 0 && i % YIELD_EVERY == 0 {
                // A user with thousands of watchers must not hold the
                // worker from everyone else's events meanwhile.
                tokio::task::yield_now().await;
            }
            let Some(viewer) = viewers.get(w) else {
                continue;
            };
            let relationship = self.relationship(*w, subject).await?;
            let view = self.view(relationship, viewer, &subject_profile, change.last_seen);
            if !view.show_status {
                continue;
            }
            let live = Some(Live {
                status: change.status,
                last_activity_at: change.at,
            });
            let object = status_object(subject, live, change.last_seen, &view);
            let f = match payloads.iter().find(|(o, _)| *o == object) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = status_frame(&change, &view.last_seen, subject);
                    payloads.push((object, f.clone()));
                    f
                }
            };
            deliveries.push((*w, f));
        }
        // Deliver in order: a change older than one already delivered for
        // this user is dropped rather than shown after it, and so is a
        // repeat of the status watchers here were last told.
        let mut delivered = 0;
        if let Some(_order) = self.note_announced(subject, change, replay) {
            for (w, f) in &deliveries {
                delivered += self.registry.send(w, f);
            }
        }
        METRICS
            .status_deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        METRICS.status_fanout.observe(started.elapsed());
        Ok(())
    }

    /// Records `change` as the last one told about `subject`, unless it is
    /// older than that one, or a replay of the same status (then `None`:
    /// don't deliver). Hold the returned guard while delivering, so
    /// deliveries keep this order.
    fn note_announced(
        &self,
        subject: Uuid,
        change: StatusChange,
        replay: bool,
    ) -> Option<dashmap::mapref::one::RefMut<'_, Uuid, (u64, Status)>> {
        let mut last = match self.announced.entry(subject) {
            dashmap::Entry::Occupied(mut e) => {
                let (seq, status) = *e.get();
                if seq > change.seq {
                    return None;
                }
                if replay && status == change.status {
                    e.get_mut().0 = change.seq;
                    return None;
                }
                e.into_ref()
            }
            dashmap::Entry::Vacant(e) => e.insert((0, change.status)),
        };
        *last = (change.seq, change.status);
        Some(last)
    }

    /// Records every connected or grace-period user offline now (shutdown).
    /// Alone, that is news for the webhook too; a cluster node hears of it
    /// from Redis as it leaves.
    pub(super) fn record_everyone_offline(&self) {
        let now = Utc::now();
        for e in self.registry.users.iter() {
            let at = e.disconnected_at.unwrap_or(now);
            self.write_behind.record(*e.key(), Status::Offline, at);
            if self.cluster.is_none() {
                let offline = StatusChange {
                    seq: 0,
                    status: Status::Offline,
                    at,
                    last_seen: Some(at),
                };
                self.report(transition(*e.key(), offline));
            }
        }
    }
}

/// What the webhook hears of a change: no last seen while online.
fn transition(user: Uuid, change: StatusChange) -> Transition {
    Transition {
        user,
        status: change.status,
        at: change.at,
        last_seen: change.last_seen.filter(|_| change.status != Status::Online),
    }
}

fn status_frame(change: &StatusChange, view: &LastSeenView, subject: Uuid) -> Frame {
    let (last_seen, approx) = match (change.status, view) {
        (Status::Online, _) => (None, None),
        (_, LastSeenView::Exact) => (Some(change.last_seen.map(TimeString)), None),
        (_, LastSeenView::Approximate(label)) => (Some(None), Some(label.clone())),
        (_, LastSeenView::Hidden) => (Some(None), None),
    };
    let timestamp = (change.status != Status::Offline).then_some(change.at);
    frame(
        "user_status",
        UserStatus {
            user_id: subject,
            status: change.status,
            timestamp,
            last_seen,
            last_seen_approx: approx,
        },
    )
}

/// Writes `last_seen` of connected users every flush interval and any
/// offline transition as soon as it is recorded.
pub(super) async fn run_flusher(presence: Weak<Presence>, stop: CancellationToken) {
    let interval = match presence.upgrade() {
        Some(p) => p.policies.status_config().last_seen_flush,
        None => return,
    };
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(p) = presence.upgrade() else { return };
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => true,
            _ = p.write_behind.wake.notified() => false,
        };
        if batch {
            let now = Utc::now();
            for (user, status) in p.registry.connected_users() {
                p.write_behind.record(user, status, now);
            }
        }
        // A failed write stays pending: retry it until the store takes it,
        // not at the next interval.
        while !p.write_behind.flush(&p.directory).await {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(super::flush::RETRY_DELAY) => {}
            }
        }
    }
}
