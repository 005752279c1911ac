//! Model-based tests of the presence rules. Proptest generates random
//! interleavings of what clients, the chat backend and the clock do; each
//! is applied to real `Presence` nodes on a paused clock and to a small
//! reference model (`model/reference.rs`), and after every step what each
//! session received is checked against the model. The invariants are listed
//! in docs/architecture.md ("Invariants"). `PROPTEST_CASES` raises the case
//! count (default: [`DEFAULT_CASES`]); `MODEL_TRACE=1` prints each action
//! with its virtual time.

#[path = "model/reference.rs"]
mod reference;
#[path = "model/world.rs"]
mod world;

use std::time::Duration;

use presence::model::Status;
use presence::protocol::ManualStatus;
use proptest::prelude::*;
use proptest::test_runner::Config;

use reference::Model;
use world::{Heard, SLOTS, World};

/// Cases per property when `PROPTEST_CASES` is unset: small enough that the
/// whole binary stays well under a minute in a debug build.
const DEFAULT_CASES: u32 = 64;
/// Users in every case (all contacts of each other).
const USERS: usize = 3;
/// Conversation 0 has every user; conversation 1 the first two.
const MEMBERS: [[bool; USERS]; 2] = [[true, true, true], [true, true, false]];
/// The clock's grain: every action and every rule's duration falls on it.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
enum Action {
    Connect(usize, usize),
    Disconnect(usize, usize),
    /// user, slot, conversation, start (false: stop)
    Typing(usize, usize, usize, bool),
    MessageSent(usize, usize),
    RemoveMember(usize, usize),
    Away(usize, usize),
    Online(usize, usize),
    /// Ticks of virtual time.
    Advance(u32),
}

fn action() -> impl Strategy<Value = Action> {
    let user = 0..USERS;
    let slot = 0..SLOTS;
    let conv = 0..MEMBERS.len();
    let ticks = prop_oneof![
        4 => 1u32..=12,
        // Around the rate window, the grace and the lease.
        1 => Just(10u32),
        1 => 29u32..=31,
        1 => Just(50u32),
        // Long enough to go idle.
        1 => Just(3_000u32),
    ];
    prop_oneof![
        4 => (user.clone(), slot.clone()).prop_map(|(u, s)| Action::Connect(u, s)),
        3 => (user.clone(), slot.clone()).prop_map(|(u, s)| Action::Disconnect(u, s)),
        6 => (user.clone(), slot.clone(), conv.clone())
            .prop_map(|(u, s, c)| Action::Typing(u, s, c, true)),
        3 => (user.clone(), slot.clone(), conv.clone())
            .prop_map(|(u, s, c)| Action::Typing(u, s, c, false)),
        1 => (user.clone(), conv.clone()).prop_map(|(u, c)| Action::MessageSent(u, c)),
        1 => (user.clone(), conv).prop_map(|(u, c)| Action::RemoveMember(u, c)),
        1 => (user.clone(), slot.clone()).prop_map(|(u, s)| Action::Away(u, s)),
        1 => (user, slot).prop_map(|(u, s)| Action::Online(u, s)),
        7 => ticks.prop_map(Action::Advance),
    ]
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        ..Config::default()
    }
}

/// Runs one case on a fresh runtime with a paused clock.
fn run(nodes: usize, actions: Vec<Action>) {
    // Paused from the start, and held still through setup, so that every
    // timer wheel counts from the same instant and every deadline falls on
    // a whole millisecond: a timer due when the test wakes has fired.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let members: Vec<Vec<bool>> = MEMBERS.iter().map(|m| m.to_vec()).collect();
        let mut world = world::no_advance(World::new(nodes, USERS, &members)).await;
        world.settle().await;
        let mut model = Model::new(world::rules(), USERS, nodes, members);
        let mut case = Case {
            world: &mut world,
            model: &mut model,
            status: nodes == 1,
        };
        for a in actions {
            case.apply(a).await;
        }
        case.everyone_leaves().await;
    });
}

struct Case<'a> {
    world: &'a mut World,
    model: &'a mut Model,
    /// Status is checked on one node only: across nodes it needs Redis.
    status: bool,
}

impl Case<'_> {
    async fn apply(&mut self, action: Action) {
        let (w, m) = (&mut *self.world, &mut *self.model);
        m.begin_step();
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("{:?} {action:?}", m.now);
        }
        match action {
            Action::Advance(ticks) => return self.advance(TICK * ticks).await,
            Action::Connect(u, s) => {
                if w.session(u, s).is_none() {
                    w.connect(u, s).await;
                    m.connect(u, w.node_of(s));
                }
            }
            Action::Disconnect(u, s) => {
                if w.session(u, s).is_some() {
                    w.disconnect(u, s).await;
                    m.disconnect(u, w.node_of(s));
                }
            }
            Action::Typing(u, s, c, start) => {
                if w.session(u, s).is_some() {
                    let accepted = w.typing(u, s, c, start).await;
                    let expected = m.typing_event(c, u, w.node_of(s), start);
                    assert_eq!(accepted, expected, "typing accepted iff a member");
                }
            }
            Action::MessageSent(u, c) => {
                w.message_sent(u, c).await;
                m.stop(c, u);
                m.backend_activity(u);
            }
            Action::RemoveMember(u, c) => {
                w.remove_member(u, c).await;
                m.remove_member(c, u);
            }
            Action::Away(u, s) => {
                if w.session(u, s).is_some() {
                    w.set_status(u, s, ManualStatus::Away);
                    m.set_away(u);
                }
            }
            Action::Online(u, s) => {
                if w.session(u, s).is_some() {
                    w.set_status(u, s, ManualStatus::Online);
                    m.activity(u);
                }
            }
        }
        self.world.settle().await;
        self.check();
    }

    /// Moves the clock by `d`, stopping at every instant the model says
    /// something changes, and at every tick while anyone types (so each
    /// frame's arrival time is exact).
    async fn advance(&mut self, d: Duration) {
        let target = self.model.now + d;
        loop {
            self.model.begin_step();
            let now = self.model.now;
            let mut next = target;
            if let Some(t) = self.model.next_deadline() {
                next = next.min(t);
            }
            if self.world.nodes.iter().any(|n| n.p.typing.entries() > 0) {
                next = next.min(now + TICK);
            }
            self.world.sleep(next - now).await;
            self.model.advance_to(next);
            self.check();
            if next >= target {
                return;
            }
        }
    }

    /// Every session closes; once the grace, the leases and the windows
    /// have passed, nothing is left in memory.
    async fn everyone_leaves(&mut self) {
        for u in 0..USERS {
            for s in 0..SLOTS {
                self.apply(Action::Disconnect(u, s)).await;
            }
        }
        let r = self.model.rules;
        let d = r.grace + r.lease + r.window * 2;
        self.advance(d.div_duration_f64(TICK).ceil() as u32 * TICK)
            .await;
        for u in 0..USERS {
            assert_eq!(self.model.users[u].status, Status::Offline);
        }
        for (i, n) in self.world.nodes.iter().enumerate() {
            let p = &n.p;
            assert_eq!(p.typing.entries(), 0, "node {i}: no typer entry survives");
            assert!(
                p.typing.is_empty(),
                "node {i}: no conversation or index entry survives"
            );
            assert_eq!(p.timers.armed(), 0, "node {i}: no timer survives");
            assert_eq!(p.registry.session_count(), 0, "node {i}: no session");
            for u in &self.world.users {
                assert!(p.registry.live(u).is_none(), "node {i}: no user entry");
            }
        }
    }

    /// Compares what every open session received in this step, and what it
    /// now shows, with the model.
    fn check(&mut self) {
        let now = tokio::time::Instant::now();
        let elapsed = self.model.now;
        let m = &*self.model;
        let window = m.rules.window;
        let users = self.world.users.clone();
        let conversations = self.world.conversations.clone();
        let index = |id: &uuid::Uuid, of: &[uuid::Uuid]| of.iter().position(|x| x == id).unwrap();
        if self.status {
            for (u, id) in users.iter().enumerate() {
                let live = self.world.nodes[0].p.registry.live(id).map(|l| l.status);
                assert_eq!(
                    live.unwrap_or(Status::Offline),
                    m.users[u].status,
                    "at {elapsed:?}: the live status of user {u}"
                );
            }
        }
        for (si, heard) in self.world.drain() {
            let s = self.world.session_mut(si);
            let me = s.user;
            let mut statuses: Vec<Vec<Status>> = vec![Vec::new(); users.len()];
            for h in heard {
                match h {
                    Heard::Typing {
                        conversation,
                        user,
                        is_typing,
                    } => {
                        let (c, u) = (index(&conversation, &conversations), index(&user, &users));
                        assert!(
                            m.members[c][me],
                            "only members hear typing (user {me}, conversation {c})"
                        );
                        assert_ne!(u, me, "nobody hears their own typing");
                        let key = (conversation, user);
                        let shown = s.typing.get(&key).copied().unwrap_or(false);
                        assert_ne!(
                            shown, is_typing,
                            "at {elapsed:?}: user {me} heard user {u} typing={is_typing} in {c} twice"
                        );
                        if let Some(last) = s.last_typing_frame.get(&key)
                            && !m.removed_now.contains(&(c, u))
                        {
                            assert!(
                                now - *last >= window,
                                "at {elapsed:?}: user {me} heard user {u} in {c} twice within the window"
                            );
                        }
                        s.typing.insert(key, is_typing);
                        s.last_typing_frame.insert(key, now);
                    }
                    Heard::Status { user, status } => {
                        statuses[index(&user, &users)].push(status);
                    }
                }
            }
            if self.status {
                for (v, got) in statuses.iter().enumerate() {
                    if v == me {
                        assert!(got.is_empty(), "nobody hears their own status");
                        continue;
                    }
                    let expected: Vec<Status> = m.changed.get(&v).copied().into_iter().collect();
                    assert_eq!(
                        *got, expected,
                        "at {elapsed:?}: what user {me} heard of user {v}'s status in one step"
                    );
                    if let Some(st) = got.last() {
                        s.status.insert(users[v], *st);
                    }
                    let shown = s.status.get(&users[v]).copied().unwrap_or(Status::Offline);
                    assert_eq!(
                        shown, m.users[v].status,
                        "at {elapsed:?}: user {me} sees user {v}'s status"
                    );
                }
            }
            for (c, conversation) in conversations.iter().enumerate() {
                if !m.members[c][me] {
                    continue;
                }
                for (u, user) in users.iter().enumerate() {
                    if u == me {
                        continue;
                    }
                    let shown = s
                        .typing
                        .get(&(*conversation, *user))
                        .copied()
                        .unwrap_or(false);
                    if shown {
                        let t = m.typers.get(&(c, u));
                        assert!(
                            t.is_some_and(|t| elapsed < t.lease_until + window),
                            "at {elapsed:?}: user {me} still sees user {u} typing in {c} past the lease ({t:?})"
                        );
                    }
                    if m.settled(c, u) {
                        assert_eq!(
                            shown,
                            m.want(c, u),
                            "at {elapsed:?}: user {me} sees user {u} typing in {c} ({:?})",
                            m.typers.get(&(c, u))
                        );
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// One node: typing and status, every rule.
    #[test]
    fn one_node_follows_the_model(actions in prop::collection::vec(action(), 1..60)) {
        run(1, actions);
    }

    /// Two nodes relaying typing and membership: a typer is stopped by the
    /// node it typed through, and both nodes' members see the same.
    #[test]
    fn two_nodes_follow_the_model(actions in prop::collection::vec(action(), 1..60)) {
        run(2, actions);
    }
}

/// Two typing starts of one user that cross between nodes: each is sent
/// through one node before the other's arrives. Both nodes must agree on
/// which was the latest, so that when the user closes both connections one
/// of them stops it everywhere, rather than each leaving it to the other
/// and members seeing the user typing until the lease ends. `later` is the
/// node whose start is stamped later (`None`: whenever the clock says).
fn crossing_starts_stop_when_the_user_leaves(later: Option<usize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let members = vec![vec![true, true, true]];
        let mut w = world::no_advance(World::new(2, USERS, &members)).await;
        for s in 0..SLOTS {
            w.connect(0, s).await;
        }
        w.settle().await;
        // Stamps are wall-clock milliseconds: start the later one in a
        // later millisecond.
        let first = 1 - later.unwrap_or(1);
        let a = w.typing_here(0, first, 0, true).await.unwrap();
        if later.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let b = w.typing_here(0, 1 - first, 0, true).await.unwrap();
        w.relay_typing(first, 0, 0, a).await;
        w.relay_typing(1 - first, 0, 0, b).await;
        w.settle().await;
        w.disconnect(0, 1).await;
        w.disconnect(0, 0).await;
        // Past the rate window, well inside the lease.
        w.sleep(world::rules().window * 2).await;
        let (c, watcher) = (w.conversations[0], w.users[1]);
        for (i, n) in w.nodes.iter().enumerate() {
            assert_eq!(
                n.p.typing.snapshot(c, watcher).map(|s| s.user_ids),
                None,
                "node {i} still shows the user typing"
            );
        }
    });
}

#[test]
fn crossing_starts_stop_when_the_user_leaves_the_later_ones_node_last() {
    crossing_starts_stop_when_the_user_leaves(Some(0));
}

#[test]
fn crossing_starts_stop_when_the_user_leaves_the_later_ones_node_first() {
    crossing_starts_stop_when_the_user_leaves(Some(1));
}

#[test]
fn crossing_starts_in_one_millisecond_stop_when_the_user_leaves() {
    crossing_starts_stop_when_the_user_leaves(None);
}
