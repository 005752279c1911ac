//! S0: the floor. A bare tokio-tungstenite broadcast server with no logic: a
//! client's first text frame names its group, the server answers
//! `{"type":"ready"}`, and every later text frame is forwarded to the other
//! members of that group. Each frame is serialized once (the `Utf8Bytes` is
//! shared), sockets have TCP_NODELAY, buffers are small and every connection
//! has a bounded queue (256 frames, dropped on overflow), like the server
//! under test. Whatever presence does beyond this is what its ratio to the
//! floor measures.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Frames queued per connection before it is dropped (the presence default).
pub const SEND_QUEUE: usize = 256;

type Members = Vec<(u64, mpsc::Sender<Message>)>;

#[derive(Default)]
struct Groups {
    groups: Mutex<HashMap<String, Members>>,
    next_id: AtomicU64,
}

/// Binds `addr` (use port 0 for any) and serves until `shutdown` resolves.
pub async fn spawn(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, shutdown));
    Ok((local, task))
}

/// The accept loop.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
    let groups = Arc::new(Groups::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, groups.clone()));
            }
        }
    }
}

async fn connection(stream: TcpStream, groups: Arc<Groups>) {
    let Ok(ws) =
        tokio_tungstenite::accept_async_with_config(stream, Some(crate::net::ws_config())).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let group = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => continue,
        }
    };
    let id = groups.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(SEND_QUEUE);
    if sink
        .send(Message::text(r#"{"type":"ready"}"#))
        .await
        .is_err()
    {
        return;
    }
    groups
        .groups
        .lock()
        .unwrap()
        .entry(group.clone())
        .or_default()
        .push((id, tx));
    // Writer: feed whatever is queued, flush once per batch.
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                let map = groups.groups.lock().unwrap();
                if let Some(members) = map.get(&group) {
                    for (other, tx) in members {
                        // A full queue drops the frame here; the reader of a
                        // stalled client is not the floor's problem.
                        if *other != id {
                            let _ = tx.try_send(msg.clone());
                        }
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    {
        let mut map = groups.groups.lock().unwrap();
        if let Some(members) = map.get_mut(&group) {
            members.retain(|(other, _)| *other != id);
            if members.is_empty() {
                map.remove(&group);
            }
        }
    }
    writer.abort();
}
