//! What nodes tell each other over Redis pub/sub, and the names of the
//! channels. Payloads are short text lines (the status ones are written by
//! the Lua scripts); directory changes are JSON.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::Status;
use crate::policy::Slot;

/// Channel and key names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Typing events of one conversation; nodes with members connected subscribe.
    pub fn typing(&self, conversation: Uuid) -> String {
        format!("{}:typing:{conversation}", self.prefix)
    }

    /// Status changes of one user; nodes with watchers connected subscribe.
    pub fn status(&self, user: Uuid) -> String {
        format!("{}:status:{user}", self.prefix)
    }

    /// Directory changes, plugin swaps and dead nodes: every node subscribes.
    pub fn bus(&self) -> String {
        format!("{}:bus", self.prefix)
    }

    /// Messages for one node only.
    pub fn node(&self, node: &str) -> String {
        format!("{}:to:{node}", self.prefix)
    }

    pub fn live(&self, user: Uuid) -> String {
        format!("{}:live:{user}", self.prefix)
    }
}

/// A change the admin or REST API made to what the caches hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectoryChange {
    /// Profile or privacy settings.
    Profile { user: Uuid },
    /// The member set of a conversation; `users` are those who joined or left.
    Members {
        conversation: Uuid,
        users: Vec<Uuid>,
    },
    /// `user`'s contact list; `affected` are the contacts before and after.
    Contacts { user: Uuid, affected: Vec<Uuid> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Typing {
        conversation: Uuid,
        user: Uuid,
        /// A start's stamp; `None`: a stop.
        start: Option<u64>,
        origin: String,
    },
    Status(StatusEvent),
    Directory {
        origin: String,
        change: DirectoryChange,
    },
    Plugin {
        origin: String,
        slot: Slot,
        sha256: String,
    },
    /// A node's lease ended (or it restarted): what it owned is gone.
    NodeGone {
        node: String,
    },
    /// Activity (the chat backend's, or a REST `online`) for a user
    /// connected to this node.
    Activity {
        user: Uuid,
    },
    /// A REST `away` for a user connected to this node.
    Away {
        user: Uuid,
    },
}

/// A cluster-wide status change, as the scripts publish it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusEvent {
    pub user: Uuid,
    pub status: Status,
    pub at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub seq: u64,
    /// A node republished its state (after Redis came back): nodes whose
    /// watchers were last told this status drop it.
    pub replay: bool,
}

/// A start carries its stamp after the origin; a stop has none.
pub fn typing(user: Uuid, start: Option<u64>, origin: &str) -> String {
    match start {
        Some(stamp) => format!("start|{user}|{origin}|{stamp}"),
        None => format!("stop|{user}|{origin}"),
    }
}

pub fn directory(origin: &str, change: &DirectoryChange) -> String {
    let json = serde_json::to_string(change).expect("a directory change serializes");
    format!("dir|{origin}|{json}")
}

pub fn plugin(origin: &str, slot: Slot, sha256: &str) -> String {
    format!("plugin|{origin}|{}|{sha256}", slot.as_str())
}

pub fn node_gone(node: &str) -> String {
    format!("gone|{node}")
}

pub fn activity(user: Uuid) -> String {
    format!("activity|{user}")
}

pub fn away(user: Uuid) -> String {
    format!("away|{user}")
}

pub fn millis(ms: &str) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms.parse().ok()?).single()
}

impl Names {
    /// Reads a message from `channel`; `None` for anything malformed.
    pub fn parse(&self, channel: &str, payload: &str) -> Option<Message> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if let Some(conversation) = rest.strip_prefix("typing:") {
            let mut parts = payload.splitn(3, '|');
            let start = match parts.next()? {
                "start" => true,
                "stop" => false,
                _ => return None,
            };
            let user = parts.next()?.parse().ok()?;
            let rest = parts.next()?;
            // A node that predates stamps sends none: its start wins no tie.
            let (origin, stamp) = match rest.split_once('|') {
                Some((origin, stamp)) => (origin, stamp.parse().ok()?),
                None => (rest, 0),
            };
            return Some(Message::Typing {
                conversation: conversation.parse().ok()?,
                user,
                start: start.then_some(stamp),
                origin: origin.to_owned(),
            });
        }
        if rest.starts_with("status:") {
            let p: Vec<&str> = payload.split('|').collect();
            let [user, status, at, last_seen, seq, replay] = p.as_slice() else {
                return None;
            };
            return Some(Message::Status(StatusEvent {
                user: user.parse().ok()?,
                status: status.parse().ok()?,
                at: millis(at)?,
                last_seen: if last_seen.is_empty() {
                    None
                } else {
                    Some(millis(last_seen)?)
                },
                seq: seq.parse().ok()?,
                replay: *replay == "1",
            }));
        }
        let (kind, body) = payload.split_once('|')?;
        match kind {
            "dir" => {
                let (origin, json) = body.split_once('|')?;
                Some(Message::Directory {
                    origin: origin.to_owned(),
                    change: serde_json::from_str(json).ok()?,
                })
            }
            "plugin" => {
                let p: Vec<&str> = body.split('|').collect();
                let [origin, slot, sha256] = p.as_slice() else {
                    return None;
                };
                Some(Message::Plugin {
                    origin: (*origin).to_owned(),
                    slot: slot.parse().ok()?,
                    sha256: (*sha256).to_owned(),
                })
            }
            "gone" => Some(Message::NodeGone {
                node: body.to_owned(),
            }),
            "activity" => Some(Message::Activity {
                user: body.parse().ok()?,
            }),
            "away" => Some(Message::Away {
                user: body.parse().ok()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let n = Names::new("p");
        let (c, u) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            n.parse(&n.typing(c), &typing(u, Some(1_700_000_000_123), "node-a")),
            Some(Message::Typing {
                conversation: c,
                user: u,
                start: Some(1_700_000_000_123),
                origin: "node-a".into()
            })
        );
        assert_eq!(
            n.parse(&n.typing(c), &typing(u, None, "node-a")),
            Some(Message::Typing {
                conversation: c,
                user: u,
                start: None,
                origin: "node-a".into()
            })
        );
        let change = DirectoryChange::Members {
            conversation: c,
            users: vec![u],
        };
        assert_eq!(
            n.parse(&n.bus(), &directory("b", &change)),
            Some(Message::Directory {
                origin: "b".into(),
                change
            })
        );
        assert_eq!(
            n.parse(&n.bus(), &plugin("b", Slot::Privacy, "ab12")),
            Some(Message::Plugin {
                origin: "b".into(),
                slot: Slot::Privacy,
                sha256: "ab12".into()
            })
        );
        assert_eq!(
            n.parse(&n.bus(), &node_gone("x")),
            Some(Message::NodeGone { node: "x".into() })
        );
        let status = format!("{u}|away|1700000000123|1700000000000|1700000000123000|0");
        let Some(Message::Status(e)) = n.parse(&n.status(u), &status) else {
            panic!("a status event");
        };
        assert_eq!((e.status, e.seq), (Status::Away, 1_700_000_000_123_000));
        assert_eq!(e.last_seen.unwrap().timestamp_millis(), 1_700_000_000_000);
    }

    #[test]
    fn malformed_messages_are_ignored() {
        let n = Names::new("p");
        let u = Uuid::new_v4();
        assert_eq!(n.parse(&n.typing(u), "start|not-a-uuid|a|1"), None);
        assert_eq!(n.parse(&n.typing(u), &format!("start|{u}|a|soon")), None);
        assert_eq!(n.parse(&n.status(u), "x|online"), None);
        assert_eq!(n.parse(&n.bus(), "dir|a|{"), None);
        assert_eq!(n.parse("other:bus", "gone|x"), None);
    }
}
