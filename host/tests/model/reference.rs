//! The reference model: what the rules say each user's status and each
//! typing state should be, in a few lines per rule and with no timers,
//! windows or fan-out. Time is virtual, counted from the start of a case.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use presence::model::Status;

/// The durations the rules run on, read from the loaded policies.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub grace: Duration,
    pub lease: Duration,
    pub window: Duration,
    pub away_after: Duration,
}

/// One user's typing in one conversation.
#[derive(Debug, Clone, Copy)]
pub struct Typer {
    pub typing: bool,
    pub lease_until: Duration,
    /// When `typing` last changed: members see the change one window later at most.
    pub last_change: Duration,
    /// The node whose client sent the latest start.
    pub origin: usize,
}

#[derive(Debug, Clone)]
pub struct User {
    /// Open sessions, per node.
    pub sessions: Vec<usize>,
    pub status: Status,
    pub grace_until: Option<Duration>,
    pub last_activity: Duration,
}

pub struct Model {
    pub rules: Rules,
    pub now: Duration,
    pub users: Vec<User>,
    /// `[conversation][user]`
    pub members: Vec<Vec<bool>>,
    pub typers: BTreeMap<(usize, usize), Typer>,
    /// Status transitions of the current step, per user.
    pub changed: BTreeMap<usize, Status>,
    /// (conversation, user) removed in the current step: their stop is not rate-limited.
    pub removed_now: BTreeSet<(usize, usize)>,
}

impl Model {
    pub fn new(rules: Rules, users: usize, nodes: usize, members: Vec<Vec<bool>>) -> Model {
        let user = User {
            sessions: vec![0; nodes],
            status: Status::Offline,
            grace_until: None,
            last_activity: Duration::ZERO,
        };
        Model {
            rules,
            now: Duration::ZERO,
            users: vec![user; users],
            members,
            typers: BTreeMap::new(),
            changed: BTreeMap::new(),
            removed_now: BTreeSet::new(),
        }
    }

    pub fn begin_step(&mut self) {
        self.changed.clear();
        self.removed_now.clear();
    }

    pub fn connected(&self, u: usize) -> bool {
        self.users[u].sessions.iter().any(|n| *n > 0)
    }

    fn transition(&mut self, u: usize, status: Status) {
        self.users[u].status = status;
        self.changed.insert(u, status);
    }

    /// A new connection: the first makes the user online; one within the
    /// grace resumes where they were (no status change).
    pub fn connect(&mut self, u: usize, node: usize) {
        let was_connected = self.connected(u);
        self.users[u].sessions[node] += 1;
        if self.users[u].status == Status::Offline {
            self.users[u].last_activity = self.now;
            self.transition(u, Status::Online);
        } else if !was_connected {
            self.users[u].grace_until = None;
            self.idle_check(u);
        }
    }

    /// A connection closed: the last one on a node stops what the user
    /// typed through it; the last one of all starts the grace.
    pub fn disconnect(&mut self, u: usize, node: usize) {
        self.users[u].sessions[node] -= 1;
        if self.users[u].sessions[node] == 0 {
            let now = self.now;
            for ((_, tu), t) in self.typers.iter_mut() {
                if *tu == u && t.typing && t.origin == node {
                    t.typing = false;
                    t.last_change = now;
                }
            }
        }
        if !self.connected(u) {
            self.users[u].grace_until = Some(self.now + self.rules.grace);
        }
    }

    /// Activity resets the idle clock of a known user and ends away.
    pub fn activity(&mut self, u: usize) {
        if self.users[u].status == Status::Offline {
            return;
        }
        self.users[u].last_activity = self.now;
        if self.users[u].status == Status::Away && self.connected(u) {
            self.transition(u, Status::Online);
        }
    }

    /// The chat backend saw activity (a sent message): only a connected
    /// user's idle clock moves.
    pub fn backend_activity(&mut self, u: usize) {
        if self.connected(u) {
            self.activity(u);
        }
    }

    pub fn set_away(&mut self, u: usize) {
        if self.connected(u) && self.users[u].status != Status::Away {
            self.transition(u, Status::Away);
        }
    }

    /// A typing event from a client; false if refused (not a member).
    pub fn typing_event(&mut self, c: usize, u: usize, node: usize, start: bool) -> bool {
        if !self.members[c][u] {
            return false;
        }
        if start {
            self.start(c, u, node);
        } else {
            self.stop(c, u);
        }
        self.activity(u);
        true
    }

    fn start(&mut self, c: usize, u: usize, node: usize) {
        let now = self.now;
        let lease = self.rules.lease;
        let t = self.typers.entry((c, u)).or_insert(Typer {
            typing: false,
            lease_until: now,
            last_change: now,
            origin: node,
        });
        if !t.typing {
            t.typing = true;
            t.last_change = now;
        }
        t.lease_until = now + lease;
        t.origin = node;
    }

    pub fn stop(&mut self, c: usize, u: usize) {
        let now = self.now;
        if let Some(t) = self.typers.get_mut(&(c, u))
            && t.typing
        {
            t.typing = false;
            t.last_change = now;
        }
    }

    pub fn remove_member(&mut self, c: usize, u: usize) {
        if !self.members[c][u] {
            return;
        }
        self.members[c][u] = false;
        self.stop(c, u);
        self.removed_now.insert((c, u));
    }

    /// Whether members should see `u` typing in `c`, once settled.
    pub fn want(&self, c: usize, u: usize) -> bool {
        self.members[c][u] && self.typers.get(&(c, u)).is_some_and(|t| t.typing)
    }

    /// Whether what members see of (`c`, `u`) must match [`want`](Self::want) now.
    pub fn settled(&self, c: usize, u: usize) -> bool {
        self.removed_now.contains(&(c, u))
            || self
                .typers
                .get(&(c, u))
                .is_none_or(|t| self.now >= t.last_change + self.rules.window)
    }

    /// The next instant after now at which the model changes or a
    /// convergence check becomes due.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut at: Vec<Duration> = Vec::new();
        for t in self.typers.values() {
            if t.typing {
                at.push(t.lease_until);
            }
            at.push(t.last_change + self.rules.window);
        }
        for (u, user) in self.users.iter().enumerate() {
            at.extend(user.grace_until);
            if self.connected(u) && user.status == Status::Online {
                at.push(user.last_activity + self.rules.away_after);
            }
        }
        at.into_iter().filter(|t| *t > self.now).min()
    }

    /// Moves the clock to `t` (no deadline lies strictly between) and applies
    /// what fell due: leases, graces, idleness.
    pub fn advance_to(&mut self, t: Duration) {
        self.now = t;
        for typer in self.typers.values_mut() {
            if typer.typing && typer.lease_until <= t {
                typer.typing = false;
                typer.last_change = typer.lease_until;
            }
        }
        for u in 0..self.users.len() {
            if self.users[u].grace_until.is_some_and(|g| g <= t) {
                self.users[u].grace_until = None;
                self.transition(u, Status::Offline);
            }
            self.idle_check(u);
        }
    }

    fn idle_check(&mut self, u: usize) {
        let user = &self.users[u];
        if self.connected(u)
            && user.status == Status::Online
            && self.now >= user.last_activity + self.rules.away_after
        {
            self.transition(u, Status::Away);
        }
    }
}
