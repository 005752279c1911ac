//! Targets (a presence server or the S0 floor), loopback-only connects from
//! several 127.0.0.x source addresses, tokens and admin calls.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

pub type Ws = WebSocketStream<TcpStream>;

/// Connections per source address: well under the ~28k ephemeral ports one
/// (source address, destination) pair has.
pub const CONNECTIONS_PER_SOURCE: usize = 20_000;

/// How long one connect + handshake + `ready` may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the load generator talks to.
#[derive(Clone, Debug)]
pub enum Target {
    /// A presence server: admin API for setup, `/ws?token=…` for clients.
    Presence {
        addr: SocketAddr,
        admin_key: String,
        jwt_secret: String,
    },
    /// The bare broadcast server of S0: a client joins a group by its first
    /// text frame and gets `{"type":"ready"}` back.
    Floor { addr: SocketAddr },
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Presence { addr, .. } | Target::Floor { addr } => *addr,
        }
    }

    pub fn is_floor(&self) -> bool {
        matches!(self, Target::Floor { .. })
    }

    pub fn name(&self) -> &'static str {
        if self.is_floor() { "floor" } else { "presence" }
    }
}

/// `http://127.0.0.1:8080`, `ws://127.0.0.1:9000` or `127.0.0.1:8080` → a loopback
/// socket address. Anything outside 127.0.0.0/8 (or `localhost`) is refused: this
/// tool only loads the local machine.
pub fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport
        .rsplit_once(':')
        .with_context(|| format!("{url}: needs an explicit port"))?;
    let ip: IpAddr = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_matches(['[', ']'])
            .parse()
            .with_context(|| format!("{url}: host must be an IP address in 127.0.0.0/8"))?
    };
    if !ip.is_loopback() {
        bail!("{url}: refusing a non-loopback target (only 127.0.0.0/8 may be loaded)");
    }
    let port: u16 = port.parse().with_context(|| format!("{url}: bad port"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Round-robin over 127.0.0.1..=127.0.0.K (from `first`) as client source addresses.
#[derive(Debug)]
pub struct Sources {
    first: u8,
    count: usize,
    next: AtomicUsize,
}

impl Sources {
    /// `k` addresses, or enough for `connections` at [`CONNECTIONS_PER_SOURCE`] each.
    pub fn new(k: Option<usize>, connections: usize) -> Arc<Sources> {
        let count = k
            .unwrap_or_else(|| connections.div_ceil(CONNECTIONS_PER_SOURCE))
            .clamp(1, 254);
        Arc::new(Sources {
            first: 1,
            count,
            next: AtomicUsize::new(0),
        })
    }

    /// As many addresses again, after these: for new connections while the
    /// ports of these linger in TIME_WAIT.
    pub fn next_set(&self) -> Arc<Sources> {
        let first = usize::from(self.first) + self.count;
        Arc::new(Sources {
            first: first.min(254) as u8,
            count: self.count.min(255 - first.min(254)),
            next: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    fn pick(&self) -> Ipv4Addr {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
        Ipv4Addr::new(127, 0, 0, self.first + i as u8)
    }
}

/// Small buffers on both sides: memory per connection matters in S1.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a TCP connection from the next source address, then the WebSocket
/// handshake on `path` (`/ws?token=…`, or `/` for the floor).
pub async fn connect_ws(target: SocketAddr, sources: &Sources, path: &str) -> anyhow::Result<Ws> {
    connect_ws_with(target, sources, path, None).await
}

/// [`connect_ws`] with the client socket's `SO_RCVBUF` set before connecting
/// (S6's slow consumers: a small receive window fills after a few frames).
pub async fn connect_ws_with(
    target: SocketAddr,
    sources: &Sources,
    path: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Ws> {
    let socket = match target {
        // With one source address the kernel's own choice (127.0.0.1) is the
        // same, and connect-time port selection is much cheaper than bind(ip, 0),
        // which scans for a free port (IP_BIND_ADDRESS_NO_PORT would avoid that
        // but needs a raw setsockopt).
        SocketAddr::V4(_) if sources.count() == 1 => TcpSocket::new_v4()?,
        SocketAddr::V4(_) => {
            let s = TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(IpAddr::V4(sources.pick()), 0))
                .context("binding a 127.0.0.x source address")?;
            s
        }
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let stream = socket
        .connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{target}{path}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Connects one client and waits for its `ready` frame. `user` and `name` are
/// the token's claims for a presence server; `group` is the join message for
/// the floor.
pub async fn connect_client(
    target: &Target,
    sources: &Sources,
    token: Option<&str>,
    group: &str,
) -> anyhow::Result<Ws> {
    connect_client_with(target, sources, token, group, None).await
}

/// [`connect_client`] with an optional `SO_RCVBUF` for the client socket.
pub async fn connect_client_with(
    target: &Target,
    sources: &Sources,
    token: Option<&str>,
    group: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Ws> {
    let fut = async {
        let mut ws = match target {
            Target::Presence { addr, .. } => {
                let token = token.context("a presence client needs a token")?;
                connect_ws_with(*addr, sources, &format!("/ws?token={token}"), recv_buffer).await?
            }
            Target::Floor { addr } => {
                let mut ws = connect_ws_with(*addr, sources, "/", recv_buffer).await?;
                ws.send(Message::text(group.to_owned())).await?;
                ws
            }
        };
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("ready") => return Ok(ws),
                        Some("error") => bail!("error before ready: {t}"),
                        _ => continue,
                    }
                }
                Some(Ok(Message::Close(c))) => bail!("closed before ready: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection ended before ready"),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .context("no ready in time")?
}

/// An HS256 user token valid for an hour.
pub fn token(secret: &str, user: Uuid, name: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600;
    let claims = json!({"sub": user, "exp": exp, "name": name});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .expect("HS256 signing cannot fail")
}

/// Admin API client for setup.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// Admin calls in flight at once during setup.
pub const ADMIN_CONCURRENCY: usize = 32;

impl Admin {
    pub fn new(addr: SocketAddr, key: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: format!("http://{addr}/api/v1/admin"),
            key: key.to_owned(),
        }
    }

    async fn put(&self, path: String, body: Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("admin PUT {path}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("admin PUT {path}: {status} {text}");
        }
        Ok(())
    }

    /// Creates the users (id, display name), [`ADMIN_CONCURRENCY`] at a time.
    pub async fn users(&self, users: &[(Uuid, String)]) -> anyhow::Result<()> {
        futures_util::stream::iter(users.iter().map(|(id, name)| {
            self.put(
                format!("/users/{id}"),
                json!({"username": name.to_lowercase(), "display_name": name}),
            )
        }))
        .buffer_unordered(ADMIN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    }

    /// Sets each user's contact list (`(user, contacts)`): the user becomes a
    /// watcher of every contact.
    pub async fn contacts(&self, lists: &[(Uuid, Vec<Uuid>)]) -> anyhow::Result<()> {
        futures_util::stream::iter(lists.iter().map(|(user, contacts)| {
            self.put(
                format!("/users/{user}/contacts"),
                json!({"user_ids": contacts}),
            )
        }))
        .buffer_unordered(ADMIN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    }

    /// `PUT /plugins/{slot}` with a component's bytes; the server's answer on
    /// success, the status and body as an error otherwise.
    pub async fn install_plugin(&self, slot: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        let resp = self
            .http
            .put(format!("{}/plugins/{slot}", self.base))
            .bearer_auth(&self.key)
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("admin PUT /plugins/{slot}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("admin PUT /plugins/{slot}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One counter or gauge from `/metrics` (admin key), `None` when absent.
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        Ok(self.metrics(&[name]).await?[0])
    }

    /// Several from one scrape of `/metrics`, in the order asked.
    pub async fn metrics(&self, names: &[&str]) -> anyhow::Result<Vec<Option<f64>>> {
        let base = self.base.trim_end_matches("/api/v1/admin");
        let text = self
            .http
            .get(format!("{base}/metrics"))
            .bearer_auth(&self.key)
            .send()
            .await
            .context("GET /metrics")?
            .error_for_status()?
            .text()
            .await?;
        Ok(names.iter().map(|n| metric_value(&text, n)).collect())
    }

    /// Sets each conversation's member set.
    pub async fn conversations(&self, convs: &[(Uuid, Vec<Uuid>)]) -> anyhow::Result<()> {
        futures_util::stream::iter(convs.iter().map(|(id, members)| {
            self.put(
                format!("/conversations/{id}/members"),
                json!({"user_ids": members}),
            )
        }))
        .buffer_unordered(ADMIN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    }
}

/// The value of an unlabelled sample `name` in Prometheus text format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_metric() {
        let text =
            "# HELP x y\npresence_send_queue_drops_total 3\npresence_send_queue_drops_totalx 9\n";
        assert_eq!(
            metric_value(text, "presence_send_queue_drops_total"),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "nope"), None);
    }

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback_addr("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            loopback_addr("ws://127.0.0.3:9/ws").unwrap(),
            "127.0.0.3:9".parse().unwrap()
        );
        assert!(loopback_addr("localhost:80").is_ok());
        assert!(loopback_addr("http://10.0.0.1:8080").is_err());
        assert!(loopback_addr("http://example.com:80").is_err());
        assert!(loopback_addr("http://127.0.0.1").is_err());
    }

    #[test]
    fn source_addresses_follow_the_connection_count() {
        assert_eq!(Sources::new(None, 100).count(), 1);
        assert_eq!(Sources::new(None, 45_000).count(), 3);
        let s = Sources::new(Some(2), 0);
        assert_eq!(s.pick(), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(s.pick(), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(s.pick(), Ipv4Addr::new(127, 0, 0, 1));
    }
}
