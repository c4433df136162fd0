//! A small fault-injecting TCP proxy for tests: it sits between a client (the daemon)
//! and a server, and on demand delays every forwarded chunk, cuts every open connection,
//! or turns new connections away. It owns the sockets of the connections it forwards
//! and nothing else. Runs on the tokio runtime that starts it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy. Dropping it stops listening and closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: AbortHandle,
}

struct Shared {
    target: SocketAddr,
    latency_ns: AtomicU64,
    refuse: AtomicBool,
    /// Open connections by id. Aborting a task drops both of its sockets.
    conns: Mutex<HashMap<u64, AbortHandle>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            latency_ns: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        Ok(Proxy {
            addr,
            shared,
            accept_task,
        })
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Delay added before forwarding each chunk, in both directions, from now on (also
    /// on connections already open). `Duration::ZERO` turns it off.
    pub fn set_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shared.latency_ns.store(ns, Ordering::Relaxed);
    }

    /// Closes every open connection now, on both ends. New connections are still
    /// accepted (unless [`Proxy::set_refuse`] is on).
    pub fn cut_all(&self) {
        let conns: Vec<AbortHandle> = self.shared.conns().drain().map(|(_, h)| h).collect();
        for h in conns {
            h.abort();
        }
    }

    /// While `true`, new connections are accepted and closed at once, without
    /// contacting the target: clients see the connection closed during startup.
    pub fn set_refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::Relaxed);
    }

    /// Connections open right now.
    pub fn connection_count(&self) -> usize {
        self.shared.conns().len()
    }

    /// Connections accepted and forwarded since the start (refused ones not counted).
    pub fn total_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            // E.g. a client that reset before accept, or fd exhaustion: keep serving.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        if shared.refuse.load(Ordering::Relaxed) {
            drop(inbound);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // Registered under the lock before the task can remove itself, so a short-lived
        // connection can't leave a stale entry behind.
        let mut conns = shared.conns();
        let task_shared = shared.clone();
        let handle = tokio::spawn(async move {
            let _ = relay(inbound, &task_shared).await;
            task_shared.conns().remove(&id);
        });
        conns.insert(id, handle.abort_handle());
    }
}

async fn relay(inbound: TcpStream, shared: &Shared) -> io::Result<()> {
    let outbound = TcpStream::connect(shared.target).await?;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = pump(in_read, out_write, shared);
    let down = pump(out_read, in_write, shared);
    // Each direction ends on its own EOF, passing it on as a half-close, so neither
    // side loses data the other already sent.
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: &Shared) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let latency = shared.latency_ns.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_nanos(latency)).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}
