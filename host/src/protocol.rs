//! The application protocol (SPEC §4–5): the JSON events carried in WebSocket
//! text frames (`{"type": "...", "data": {...}}`) and the status objects the
//! REST API answers with. Client events are parsed into [`ClientEvent`];
//! server events are serialized once into a [`Frame`] and shared by every
//! recipient.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::Status;

/// One serialized server event: JSON text. Cloning shares the bytes, so a
/// fan-out serializes a payload once whatever the number of recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    pub const fn from_static(text: &'static str) -> Frame {
        Frame(Bytes::from_static(text.as_bytes()))
    }

    /// The UTF-8 bytes, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a frame is made from a string")
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Frame {
        Frame(Bytes::from(text))
    }
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    TypingStart {
        conversation_id: Uuid,
        user_id: Option<Uuid>,
    },
    TypingStop {
        conversation_id: Uuid,
        user_id: Option<Uuid>,
    },
    SetStatus {
        status: ManualStatus,
    },
    Activity,
    Ping,
    /// A fresh token for this connection, before the one it opened with expires.
    Auth {
        token: String,
    },
}

/// A status a user sets by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManualStatus {
    Online,
    Away,
}

/// Why a client frame was refused; `ref_type` is the frame's `type` when known.
#[derive(Debug, Clone, PartialEq)]
pub struct BadFrame {
    pub ref_type: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// `typing_start` and `typing_stop`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingData {
    pub conversation_id: Uuid,
    /// Your own id, if given at all: another is refused (`forbidden`).
    #[serde(default)]
    pub user_id: Option<Uuid>,
}

/// `set_status`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusData {
    pub status: ManualStatus,
}

/// `auth`: a fresh token for this connection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthData {
    pub token: String,
}

impl ClientEvent {
    pub fn parse(text: &str) -> Result<ClientEvent, BadFrame> {
        // serde would take `["ping"]` for a struct `{type, data}`: a frame
        // is an object (found by the `client_events` fuzz target).
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return Err(BadFrame {
                ref_type: None,
                message: "not a frame: a frame is a JSON object".to_owned(),
            });
        }
        let raw: RawFrame = serde_json::from_str(text).map_err(|e| BadFrame {
            ref_type: None,
            message: format!("not a frame: {e}"),
        })?;
        let bad = |message: String| BadFrame {
            ref_type: Some(raw.kind.clone()),
            message,
        };
        // An object: serde would take `["away"]` for `{"status": "away"}` too.
        let data = || match &raw.data {
            Some(d @ serde_json::Value::Object(_)) => Ok(d.clone()),
            Some(_) => Err(bad("data must be an object".to_owned())),
            None => Err(bad("missing data".to_owned())),
        };
        match raw.kind.as_str() {
            "typing_start" | "typing_stop" => {
                let d: TypingData =
                    serde_json::from_value(data()?).map_err(|e| bad(format!("bad data: {e}")))?;
                Ok(if raw.kind == "typing_start" {
                    ClientEvent::TypingStart {
                        conversation_id: d.conversation_id,
                        user_id: d.user_id,
                    }
                } else {
                    ClientEvent::TypingStop {
                        conversation_id: d.conversation_id,
                        user_id: d.user_id,
                    }
                })
            }
            "set_status" => {
                let d: StatusData =
                    serde_json::from_value(data()?).map_err(|e| bad(format!("bad data: {e}")))?;
                Ok(ClientEvent::SetStatus { status: d.status })
            }
            "activity" => Ok(ClientEvent::Activity),
            "ping" => Ok(ClientEvent::Ping),
            "auth" => {
                let d: AuthData =
                    serde_json::from_value(data()?).map_err(|e| bad(format!("bad data: {e}")))?;
                Ok(ClientEvent::Auth { token: d.token })
            }
            other => Err(BadFrame {
                ref_type: Some(other.to_owned()),
                message: format!("unknown type {other:?}"),
            }),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ClientEvent::TypingStart { .. } => "typing_start",
            ClientEvent::TypingStop { .. } => "typing_stop",
            ClientEvent::SetStatus { .. } => "set_status",
            ClientEvent::Activity => "activity",
            ClientEvent::Ping => "ping",
            ClientEvent::Auth { .. } => "auth",
        }
    }
}

/// ISO 8601 UTC with milliseconds and `Z`.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(t))
}

pub fn ser_opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&timestamp(t)),
        None => s.serialize_none(),
    }
}

/// A status as one viewer may see it (SPEC §5), used by REST and `ready`.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct StatusObject {
    pub user_id: Uuid,
    pub status: Status,
    pub is_online: bool,
    /// Null while online, when privacy hides it, or when unknown.
    #[serde(serialize_with = "ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<DateTime<Utc>>,
    /// Whether this viewer may see the subject's last seen.
    pub show_last_seen: bool,
    /// A privacy policy's label in place of an exact time ("recently", …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub last_seen_approx: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

/// Serializes one server frame.
pub fn frame<T: Serialize>(kind: &str, data: T) -> Frame {
    let text = serde_json::to_string(&Envelope { kind, data }).expect("server frames serialize");
    Frame::from(text)
}

/// `ready`: sent first on every connection.
#[derive(Serialize, ToSchema)]
pub struct Ready<'a> {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub heartbeat_interval_ms: u64,
    pub contacts: &'a [StatusObject],
    pub typing: &'a [TypingSnapshot],
}

/// Who types in one conversation now (the recipient excluded).
#[derive(Serialize, Debug, Clone, ToSchema)]
pub struct TypingSnapshot {
    pub conversation_id: Uuid,
    pub user_ids: Vec<Uuid>,
}

/// `user_status`: online carries `timestamp`; away carries `timestamp` and
/// `last_seen`; offline carries `last_seen` (null when privacy hides it).
#[derive(Serialize, Debug, Clone, PartialEq, ToSchema)]
pub struct UserStatus {
    pub user_id: Uuid,
    pub status: Status,
    /// When it changed; online and away only.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub timestamp: Option<DateTime<Utc>>,
    /// Present for away and offline, null when hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, required = false)]
    pub last_seen: Option<Option<TimeString>>,
    /// A privacy policy's label in place of an exact time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub last_seen_approx: Option<String>,
}

/// A timestamp already formatted for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeString(pub DateTime<Utc>);

impl Serialize for TimeString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ser_time(&self.0, s)
    }
}

/// `user_typing`: someone started or stopped typing.
#[derive(Serialize, ToSchema)]
pub struct UserTyping<'a> {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub username: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub is_typing: bool,
    /// Everyone typing there now, the recipient excluded.
    pub typing_user_ids: &'a [Uuid],
    /// The typing policy's summary in the recipient's locale; empty for nobody.
    pub text: &'a str,
}

/// `error`: a client event was refused.
#[derive(Serialize, ToSchema)]
pub struct ErrorData<'a> {
    /// `bad_request`, `forbidden`, `not_member`, `rate_limited`,
    /// `unauthorized`, `token_expired` or `internal`.
    pub code: &'a str,
    pub message: &'a str,
    /// The `type` of the client event it answers, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub ref_type: Option<&'a str>,
}

pub fn error_frame(code: &str, message: &str, ref_type: Option<&str>) -> Frame {
    frame(
        "error",
        ErrorData {
            code,
            message,
            ref_type,
        },
    )
}

/// `auth_ok`: the renewed token is in force until `expires_at`.
#[derive(Serialize, ToSchema)]
pub struct AuthOk {
    #[serde(serialize_with = "ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

pub fn pong_frame() -> Frame {
    Frame::from_static(r#"{"type":"pong","data":{}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_type() {
        let c = Uuid::new_v4();
        let start = format!(r#"{{"type":"typing_start","data":{{"conversation_id":"{c}"}}}}"#);
        assert_eq!(
            ClientEvent::parse(&start).unwrap(),
            ClientEvent::TypingStart {
                conversation_id: c,
                user_id: None
            }
        );
        assert_eq!(
            ClientEvent::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientEvent::Ping
        );
        assert_eq!(
            ClientEvent::parse(r#"{"type":"activity","data":{}}"#).unwrap(),
            ClientEvent::Activity
        );
        assert_eq!(
            ClientEvent::parse(r#"{"type":"set_status","data":{"status":"away"}}"#).unwrap(),
            ClientEvent::SetStatus {
                status: ManualStatus::Away
            }
        );
        assert_eq!(
            ClientEvent::parse(r#"{"type":"auth","data":{"token":"a.b.c"}}"#).unwrap(),
            ClientEvent::Auth {
                token: "a.b.c".into()
            }
        );
        for garbage in [
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","data":{"token":7}}"#,
            r#"{"type":"auth","data":{}}"#,
        ] {
            let e = ClientEvent::parse(garbage).unwrap_err();
            assert_eq!(e.ref_type.as_deref(), Some("auth"), "{garbage}");
        }
    }

    #[test]
    fn refuses_malformed_frames_naming_the_type() {
        assert_eq!(ClientEvent::parse("nope").unwrap_err().ref_type, None);
        let e = ClientEvent::parse(r#"{"type":"typing_start","data":{"conversation_id":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.ref_type.as_deref(), Some("typing_start"));
        let e =
            ClientEvent::parse(r#"{"type":"set_status","data":{"status":"offline"}}"#).unwrap_err();
        assert_eq!(e.ref_type.as_deref(), Some("set_status"));
        assert!(ClientEvent::parse(r#"{"type":"dance"}"#).is_err());
        assert!(ClientEvent::parse(r#"{"type":"typing_stop"}"#).is_err());
    }

    /// Fuzz regression: `["statu"]` was read as a frame of type `statu`,
    /// and `["ping"]` answered with a pong.
    #[test]
    fn a_frame_is_a_json_object_never_an_array() {
        let c = Uuid::new_v4();
        for text in [
            r#"["statu"]"#.to_owned(),
            r#"["ping"]"#.to_owned(),
            r#" ["ping", {}]"#.to_owned(),
            format!(r#"["typing_start", {{"conversation_id": "{c}"}}]"#),
        ] {
            let e = ClientEvent::parse(&text).unwrap_err();
            assert_eq!(e.ref_type, None, "{text}");
        }
        assert_eq!(
            ClientEvent::parse(" \r\n\t{\"type\":\"ping\"}").unwrap(),
            ClientEvent::Ping
        );
    }

    /// Fuzz regression: `"data": ["away"]` was read as `{"status": "away"}`.
    #[test]
    fn data_is_a_json_object_never_an_array() {
        let c = Uuid::new_v4();
        for (kind, data) in [
            ("set_status", r#"["away"]"#.to_owned()),
            ("typing_start", format!(r#"["{c}"]"#)),
            ("typing_stop", format!(r#"["{c}", null]"#)),
            ("auth", r#"["a.b.c"]"#.to_owned()),
            ("auth", r#""a.b.c""#.to_owned()),
        ] {
            let text = format!(r#"{{"type":"{kind}","data":{data}}}"#);
            let e = ClientEvent::parse(&text).unwrap_err();
            assert_eq!(e.ref_type.as_deref(), Some(kind), "{text}");
        }
    }

    #[test]
    fn timestamps_are_utc_with_z() {
        let t = DateTime::parse_from_rfc3339("2025-01-29T10:30:00.5+07:00")
            .unwrap()
            .to_utc();
        assert_eq!(timestamp(&t), "2025-01-29T03:30:00.500Z");
    }
}
