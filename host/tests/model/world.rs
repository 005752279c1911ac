//! The system under test: one or two real [`Presence`] nodes on a paused
//! clock, each user's sessions as outboxes the test drains, and (with two
//! nodes) an in-memory relay that carries typing and membership changes
//! between them the way `presence::remote` applies cluster messages.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use presence::auth;
use presence::config::Limits;
use presence::model::Status;
use presence::policy::{Policies, PolicyConfig};
use presence::presence::registry::{Outbox, SessionHandle};
use presence::presence::{Presence, PresenceTasks};
use presence::protocol::ManualStatus;
use presence::store::Store;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::reference::Rules;

/// A typing event a node publishes: a start with its stamp, or a stop.
#[derive(Debug, Clone, Copy)]
pub enum Sent {
    Start(u64),
    Stop,
}

/// Sessions a user may hold; with two nodes, slot `i` connects to node `i`.
pub const SLOTS: usize = 2;
/// Plenty: a model test never lets a session lag behind.
const OUTBOX: usize = 4096;

/// A policy call's deadline here: the default 10 ms of wall time is missed
/// on a loaded machine, and then privacy fails closed (status hidden), which
/// is right for a server but not what these tests are about.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// The policies are compiled once per test binary and shared by every case.
pub fn policies() -> Arc<Policies> {
    static POLICIES: OnceLock<Arc<Policies>> = OnceLock::new();
    POLICIES
        .get_or_init(|| {
            let config = PolicyConfig {
                call_deadline: CALL_DEADLINE,
                ..PolicyConfig::default()
            };
            Arc::new(Policies::load(&config).unwrap())
        })
        .clone()
}

pub fn rules() -> Rules {
    let p = policies();
    let status = p.status_config();
    let typing = p.typing_limits();
    Rules {
        grace: status.offline_grace,
        lease: typing.lease,
        window: typing.rate_window,
        away_after: status.away_after,
    }
}

/// Runs `f` without letting the paused clock jump ahead while it waits on
/// the database: a task that keeps yielding means the runtime is never idle.
pub async fn no_advance<F: Future>(f: F) -> F::Output {
    let spin = async {
        loop {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        biased;
        r = f => r,
        _ = spin => unreachable!(),
    }
}

/// What a session received, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    Typing {
        conversation: Uuid,
        user: Uuid,
        is_typing: bool,
    },
    Status {
        user: Uuid,
        status: Status,
    },
}

pub struct Session {
    pub user: usize,
    pub node: usize,
    id: u64,
    out: Arc<Outbox>,
    /// The last status heard of each other user (from `ready`, then `user_status`).
    pub status: HashMap<Uuid, Status>,
    /// Whether each (conversation, user) is shown typing to this session.
    pub typing: HashMap<(Uuid, Uuid), bool>,
    /// When the last `user_typing` about each (conversation, user) arrived.
    pub last_typing_frame: HashMap<(Uuid, Uuid), Instant>,
}

pub struct Node {
    pub p: Arc<Presence>,
    _tasks: PresenceTasks,
    name: Arc<str>,
}

pub struct World {
    pub nodes: Vec<Node>,
    pub users: Vec<Uuid>,
    pub conversations: Vec<Uuid>,
    /// `[user * SLOTS + slot]`
    pub sessions: Vec<Option<Session>>,
    /// Holds the case's database.
    _dir: tempfile::TempDir,
}

impl World {
    /// Users who all have each other as contacts, and conversations whose
    /// members are given as `[conversation][user]`. Call before pausing time.
    pub async fn new(nodes: usize, users: usize, members: &[Vec<bool>]) -> World {
        // A file, not `:memory:`: a connection sqlx drops (a flush cut short
        // by the virtual clock) must not take the database with it.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("presence.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| {
                let (p, tasks) =
                    Presence::start(store.clone(), policies(), Limits::default(), None, None);
                Node {
                    p,
                    _tasks: tasks,
                    name: Arc::from(format!("node{i}")),
                }
            })
            .collect();
        let slots = SLOTS * users;
        let users: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
        let conversations: Vec<Uuid> = members.iter().map(|_| Uuid::new_v4()).collect();
        let admin = &nodes[0].p;
        for (i, u) in users.iter().enumerate() {
            admin
                .set_profile(*u, &format!("u{i}"), &format!("User {i}"))
                .await
                .unwrap();
        }
        for (c, m) in conversations.iter().zip(members) {
            let ids: Vec<Uuid> = (0..users.len())
                .filter(|u| m[*u])
                .map(|u| users[u])
                .collect();
            admin.replace_members(*c, &ids).await.unwrap();
        }
        for u in &users {
            let others: Vec<Uuid> = users.iter().filter(|o| *o != u).copied().collect();
            admin.replace_contacts(*u, &others).await.unwrap();
        }
        let world = World {
            nodes,
            users,
            conversations,
            sessions: (0..slots).map(|_| None).collect(),
            _dir: dir,
        };
        world.warm().await;
        world
    }

    /// Fills every cache the rules read, so no fan-out waits on the store.
    async fn warm(&self) {
        for n in &self.nodes {
            let d = &n.p.directory;
            d.profiles(&self.users).await.unwrap();
            for u in &self.users {
                d.load_relations(*u).await.unwrap();
                d.watchers_of(*u).await.unwrap();
                d.contacts_of(*u).await.unwrap();
                d.conversations_of(*u).await.unwrap();
            }
            for c in &self.conversations {
                d.members(*c).await.unwrap();
            }
        }
    }

    pub fn node_of(&self, slot: usize) -> usize {
        slot % self.nodes.len()
    }

    /// Lets every timer due now fire and every fan-out finish, without
    /// moving the clock.
    pub async fn settle(&self) {
        no_advance(async {
            loop {
                for _ in 0..16 {
                    tokio::task::yield_now().await;
                }
                if self.nodes.iter().all(|n| n.p.background_work() == 0) {
                    break;
                }
            }
            for _ in 0..16 {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    pub fn session(&self, u: usize, slot: usize) -> Option<&Session> {
        self.sessions[u * SLOTS + slot].as_ref()
    }

    pub async fn connect(&mut self, u: usize, slot: usize) {
        let node = self.node_of(slot);
        let p = &self.nodes[node].p;
        let out = Arc::new(Outbox::new(OUTBOX));
        let id = p.registry.next_session_id();
        let handle = SessionHandle {
            id,
            out: out.clone(),
            locale: Arc::from("en"),
        };
        let user = auth::User {
            id: self.users[u],
            name: Some(format!("User {u}")),
            username: Some(format!("u{u}")),
            expires_at: Utc::now() + chrono::Duration::days(1),
        };
        let (_, ready) = no_advance(p.connect(&user, handle)).await.unwrap();
        let ready: Value = serde_json::from_str(ready.as_str()).unwrap();
        let data = &ready["data"];
        let mut session = Session {
            user: u,
            node,
            id,
            out,
            status: HashMap::new(),
            typing: HashMap::new(),
            last_typing_frame: HashMap::new(),
        };
        for o in data["contacts"].as_array().unwrap() {
            let who: Uuid = serde_json::from_value(o["user_id"].clone()).unwrap();
            let status: Status = serde_json::from_value(o["status"].clone()).unwrap();
            session.status.insert(who, status);
        }
        for t in data["typing"].as_array().unwrap() {
            let c: Uuid = serde_json::from_value(t["conversation_id"].clone()).unwrap();
            for who in t["user_ids"].as_array().unwrap() {
                let who: Uuid = serde_json::from_value(who.clone()).unwrap();
                session.typing.insert((c, who), true);
            }
        }
        self.sessions[u * SLOTS + slot] = Some(session);
    }

    /// Closes a session; with two nodes, what its node stops is relayed.
    pub async fn disconnect(&mut self, u: usize, slot: usize) {
        let Some(s) = self.sessions[u * SLOTS + slot].take() else {
            return;
        };
        s.out.close();
        let node = s.node;
        let last_here = !(0..SLOTS).any(|o| self.session(u, o).is_some_and(|o| o.node == node));
        let p = self.nodes[node].p.clone();
        let user = self.users[u];
        if last_here && self.nodes.len() > 1 {
            // What `disconnect` stops first, taken here to learn where, as
            // the node's publish would tell the others.
            let stopped = p.typing.stop_from(&p, user, None);
            for c in stopped {
                self.relay_stop(node, c, user);
            }
        }
        p.disconnect(user, s.id);
    }

    /// A client's `typing_start`/`typing_stop`; true if accepted.
    pub async fn typing(&self, u: usize, slot: usize, c: usize, start: bool) -> bool {
        let sent = self.typing_here(u, slot, c, start).await;
        if let Some(sent) = sent {
            self.relay_typing(self.node_of(slot), u, c, sent).await;
        }
        sent.is_some()
    }

    /// The typing event on its own node only, as if the relay were slow;
    /// what the node publishes if it was accepted.
    pub async fn typing_here(&self, u: usize, slot: usize, c: usize, start: bool) -> Option<Sent> {
        let p = &self.nodes[self.node_of(slot)].p;
        let (user, conversation) = (self.users[u], self.conversations[c]);
        no_advance(p.typing(user, Some(user), conversation, start))
            .await
            .ok()?;
        Some(match start {
            true => Sent::Start(p.typing.stamp(conversation, user).expect("a typer")),
            false => Sent::Stop,
        })
    }

    /// What the other nodes apply when a typing event from `from` arrives.
    pub async fn relay_typing(&self, from: usize, u: usize, c: usize, sent: Sent) {
        let (user, conversation) = (self.users[u], self.conversations[c]);
        let Sent::Start(stamp) = sent else {
            return self.relay_stop(from, conversation, user);
        };
        let origin = self.nodes[from].name.clone();
        for (_, other) in self.nodes.iter().enumerate().filter(|(i, _)| *i != from) {
            let q = &other.p;
            let (profile, members) = no_advance(async {
                let profile = q.directory.profile(user).await.unwrap().unwrap();
                (profile, q.directory.members(conversation).await.unwrap())
            })
            .await;
            q.typing.start(
                q,
                conversation,
                profile,
                members,
                Some((origin.clone(), stamp)),
            );
        }
    }

    fn relay_stop(&self, from: usize, conversation: Uuid, user: Uuid) {
        for (_, other) in self.nodes.iter().enumerate().filter(|(i, _)| *i != from) {
            other.p.typing.stop(&other.p, conversation, user);
        }
    }

    /// The chat backend reports a message `u` sent in `c` (through node 0).
    pub async fn message_sent(&self, u: usize, c: usize) {
        let (user, conversation) = (self.users[u], self.conversations[c]);
        let p = self.nodes[0].p.clone();
        no_advance(p.backend_activity(user, Some(conversation))).await;
        self.relay_stop(0, conversation, user);
    }

    /// The admin API removes `u` from `c` (through node 0).
    pub async fn remove_member(&self, u: usize, c: usize) {
        let (user, conversation) = (self.users[u], self.conversations[c]);
        no_advance(async {
            self.nodes[0]
                .p
                .remove_member(conversation, user)
                .await
                .unwrap();
            for other in &self.nodes[1..] {
                let (p, d) = (&other.p, &other.p.directory);
                d.invalidate_members(&conversation);
                d.invalidate_conversations(&user);
                let members = d.members(conversation).await.unwrap();
                p.typing.members_changed(p, conversation, members);
            }
        })
        .await;
        no_advance(self.warm()).await;
    }

    pub fn set_status(&self, u: usize, slot: usize, status: ManualStatus) {
        self.nodes[self.node_of(slot)]
            .p
            .set_status(self.users[u], status);
    }

    /// Everything each open session received since the last call.
    pub fn drain(&self) -> Vec<(usize, Vec<Heard>)> {
        let mut all = Vec::new();
        for (i, s) in self.sessions.iter().enumerate() {
            let Some(s) = s else { continue };
            let mut heard = Vec::new();
            s.out.drain(|f| {
                let v: Value = serde_json::from_str(f.as_str()).unwrap();
                let d = &v["data"];
                let id = |k: &str| serde_json::from_value::<Uuid>(d[k].clone()).unwrap();
                match v["type"].as_str().unwrap() {
                    "user_typing" => heard.push(Heard::Typing {
                        conversation: id("conversation_id"),
                        user: id("user_id"),
                        is_typing: d["is_typing"].as_bool().unwrap(),
                    }),
                    "user_status" => heard.push(Heard::Status {
                        user: id("user_id"),
                        status: serde_json::from_value(d["status"].clone()).unwrap(),
                    }),
                    other => panic!("unexpected frame {other}"),
                }
            });
            all.push((i, heard));
        }
        all
    }

    pub fn session_mut(&mut self, index: usize) -> &mut Session {
        self.sessions[index].as_mut().unwrap()
    }

    /// Sleeps on the virtual clock; timers due meanwhile fire in order.
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
        self.settle().await;
    }
}
