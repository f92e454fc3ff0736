//! Which connections the service keeps when it has no room for another,
//! and how long a connection may stall.
//!
//! `max_connections` bounds the connections being served, but a budget any
//! local process can spend is not a limit: four clients that never read
//! their answers, or a slowloris that reconnects whenever it is cut, would
//! hold every slot and lock token holders out. So a connection earns its
//! slot with its first request:
//!
//! - Until its first request head has arrived, a connection is *pending*:
//!   it costs a file descriptor and a head buffer, and waits at most the
//!   header timeout. Pending connections have their own, larger budget
//!   (four times `max_connections`); past it the oldest pending one is
//!   closed. A slowloris never leaves this stage.
//! - With its head read, a connection is admitted to a serving slot, as
//!   *trusted* if the head carries a valid token. When every slot is taken,
//!   the newcomer takes the slot of the oldest untrusted connection (which
//!   is closed), as a connection-pool server sheds the idle and the
//!   unknown first under pressure; only when every slot is held by a
//!   trusted connection is it refused (`503 too_many_connections`).
//!
//! So a token holder's new connection is never closed for someone without
//! a token, and gets a slot as long as one is held by someone without a
//! token. Trusted connections cannot sit on a slot either: a write the
//! client does not read within `server.write_timeout_ms` closes the
//! connection (pipelined requests whose answers are never read), and
//! hyper's header timeout closes one idle between requests. (A per-peer
//! budget would not help: on one host every client is 127.0.0.1, and the
//! token is the only thing that tells a platform from anyone else.)

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// The open connections and the slots they hold.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next: u64,
    open: HashMap<u64, Arc<Slot>>,
}

/// One open connection's standing.
#[derive(Debug)]
pub struct Slot {
    trusted: AtomicBool,
    evict: Notify,
    /// Requests answered on this connection while it was untrusted.
    untrusted_requests: std::sync::atomic::AtomicUsize,
}

/// Requests a connection that never showed a token may make before it is
/// closed (its last answer says `connection: close`). A health probe needs
/// one; a client pipelining thousands of `GET /healthz` it never reads
/// would otherwise spend the service's CPU for as long as its buffers
/// last.
pub const MAX_UNTRUSTED_REQUESTS: usize = 32;

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// A connection's hold on its slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    slot: Arc<Slot>,
    admission: Arc<Admission>,
}

/// What admitting a connection did.
#[derive(Debug)]
pub struct Admitted {
    /// The new connection's hold on its slot.
    pub ticket: Ticket,
    /// Whether an untrusted connection was evicted to make room.
    pub evicted: bool,
}

impl Admission {
    /// Room for `max` connections at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            slots: Mutex::default(),
        })
    }

    /// A slot for a new connection (`trusted` if it showed a token): a free
    /// one, else the oldest untrusted connection's (which is told to
    /// close), else none.
    pub fn admit(self: &Arc<Self>, trusted: bool) -> Result<Admitted, Full> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = false;
        if slots.open.len() >= self.max {
            // Ids grow with time: the smallest untrusted id is the oldest.
            let victim = slots
                .open
                .iter()
                .filter(|(_, slot)| !slot.trusted.load(Ordering::Acquire))
                .map(|(id, _)| *id)
                .min()
                .ok_or(Full)?;
            if let Some(slot) = slots.open.remove(&victim) {
                slot.evict.notify_one();
            }
            evicted = true;
        }
        let id = slots.next;
        slots.next += 1;
        let slot = Arc::new(Slot {
            trusted: AtomicBool::new(trusted),
            evict: Notify::new(),
            untrusted_requests: Default::default(),
        });
        slots.open.insert(id, slot.clone());
        Ok(Admitted {
            ticket: Ticket {
                id,
                slot,
                admission: self.clone(),
            },
            evicted,
        })
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .len()
    }
}

impl Ticket {
    /// The connection's standing, for its requests to update.
    pub fn slot(&self) -> Arc<Slot> {
        self.slot.clone()
    }

    /// Resolves when the connection has been evicted to make room.
    pub async fn evicted(&self) {
        self.slot.evict.notified().await;
    }
}

impl Slot {
    /// The connection carried a request with a valid token: it is not
    /// evicted for newcomers any more.
    pub fn trust(&self) {
        self.trusted.store(true, Ordering::Release);
    }

    /// Counts a request; whether the connection is to close after it
    /// (untrusted, and past [`MAX_UNTRUSTED_REQUESTS`]).
    pub fn count_request(&self) -> bool {
        !self.trusted.load(Ordering::Acquire)
            && self.untrusted_requests.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_UNTRUSTED_REQUESTS
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut slots = self
            .admission
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // An evicted connection's slot was given away already.
        if slots
            .open
            .get(&self.id)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
        {
            slots.open.remove(&self.id);
        }
    }
}

/// Reads a connection's first request head: until the blank line that ends
/// it, or `limit` bytes (hyper then refuses a head that long). Everything
/// read, which may run past the head, is returned, to be replayed.
pub async fn read_first_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while read.len() < limit {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let searched_from = read.len().saturating_sub(3);
        read.extend_from_slice(&chunk[..n]);
        if read[searched_from..].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(read)
}

/// The value of header `name` (lower case) in a request head, if present.
pub fn head_header<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    head[..end].split(|b| *b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub struct Replay<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    /// `inner`, with `read` (taken from it already) given back first.
    pub fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.read.len() {
            let n = buf.remaining().min(self.read.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.read[at..at + n]);
            self.at += n;
            if self.at == self.read.len() {
                self.read = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's stream whose writes (and flushes) fail with `TimedOut`
/// once one has waited `timeout` on a client that does not read.
#[derive(Debug)]
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    /// `inner`, its writes bounded by `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner stream answered `poll`: clears the timer if it made
    /// progress, else starts it (if it is not running) and fails once it
    /// has run out.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer (server.write_timeout_ms)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bounded(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bounded(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bounded(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_house_evicts_its_oldest_untrusted_connection() {
        let admission = Admission::new(3);
        let first = admission.admit(true).expect("room");
        let second = admission.admit(false).expect("room");
        let third = admission.admit(false).expect("room");
        assert!(!first.evicted && !second.evicted && !third.evicted);
        // Full: the oldest untrusted one (the second) makes room.
        let fourth = admission.admit(false).expect("evicts");
        assert!(fourth.evicted);
        assert_eq!(admission.open(), 3);
        // Its ticket, dropped when its connection closes, frees nothing
        // that is not its own.
        drop(second);
        assert_eq!(admission.open(), 3);
        third.ticket.slot().trust();
        fourth.ticket.slot().trust();
        // Everyone trusted: a newcomer is refused.
        assert_eq!(admission.admit(true).err(), Some(Full));
        drop(third);
        assert!(admission.admit(true).is_ok());
    }

    #[test]
    fn a_connection_without_a_token_closes_after_its_request_budget() {
        let admission = Admission::new(2);
        let untrusted = admission.admit(false).expect("room").ticket.slot();
        let closes: Vec<bool> = (0..MAX_UNTRUSTED_REQUESTS)
            .map(|_| untrusted.count_request())
            .collect();
        assert!(closes[..MAX_UNTRUSTED_REQUESTS - 1].iter().all(|c| !c));
        assert!(closes[MAX_UNTRUSTED_REQUESTS - 1]);
        let trusted = admission.admit(true).expect("room").ticket.slot();
        assert!((0..MAX_UNTRUSTED_REQUESTS * 2).all(|_| !trusted.count_request()));
    }

    #[tokio::test]
    async fn an_evicted_connection_is_told() {
        let admission = Admission::new(1);
        let first = admission.admit(false).expect("room");
        let _second = admission.admit(true).expect("evicts");
        tokio::time::timeout(Duration::from_secs(1), first.ticket.evicted())
            .await
            .expect("the first connection is told to close");
    }

    #[tokio::test]
    async fn the_first_head_is_read_and_replayed_whole() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let request = b"POST /v1/x HTTP/1.1\r\nHost: k\r\nX-Keyward-Token:  t0k  \r\n\r\nbody";
        tokio::io::AsyncWriteExt::write_all(&mut client, request)
            .await
            .expect("write");
        let mut server = server;
        let head = read_first_head(&mut server, 16 << 10).await.expect("head");
        assert_eq!(head_header(&head, "x-keyward-token"), Some(&b"t0k"[..]));
        assert_eq!(head_header(&head, "host"), Some(&b"k"[..]));
        assert_eq!(head_header(&head, "body"), None);
        let mut replayed = Replay::new(head, server);
        let mut again = vec![0u8; request.len()];
        tokio::io::AsyncReadExt::read_exact(&mut replayed, &mut again)
            .await
            .expect("replay");
        assert_eq!(again, request);
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_times_out() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut stream = WriteTimeout::new(ours, Duration::from_millis(50));
        let error = tokio::io::AsyncWriteExt::write_all(&mut stream, &[0u8; 4096])
            .await
            .expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
