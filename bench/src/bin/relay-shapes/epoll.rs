//! Shape `epoll`: one thread, one edge-triggered epoll loop of our own (mio). Each wake takes
//! every ready event; a readable socket is read (until a short read, which empties the
//! receive queue: a later arrival is a new edge) and what was read is written to its peer at
//! once, as PgBouncer's libevent callbacks do. A write that cannot finish keeps the rest,
//! stops reading the source and asks for writability until the rest is out.

use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::{Args, BUF};

const LISTENER: Token = Token(usize::MAX);

/// Bytes read from one side and not yet written to the other.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    at: usize,
}

struct Session {
    /// [client, server]
    socks: [TcpStream; 2],
    /// pending[i]: read from side i, owed to side 1 - i.
    pending: [Pending; 2],
}

/// Token of side `side` (0 client, 1 server) of session slot `slot`.
fn token(slot: usize, side: usize) -> Token {
    Token(slot * 2 + side)
}

pub fn run(args: &Args) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(args.listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut sessions: Vec<Option<Session>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; BUF];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, args, &poll, &mut sessions, &mut free)?;
                continue;
            }
            let (slot, side) = (event.token().0 / 2, event.token().0 % 2);
            let Some(session) = sessions.get_mut(slot).and_then(Option::as_mut) else {
                continue; // closed earlier in this batch
            };
            let alive = (!event.is_writable() || flush(session, 1 - side, &poll, slot))
                && (!(event.is_readable() || event.is_read_closed())
                    || forward(session, side, &mut buf, &poll, slot));
            if !alive {
                let mut s = sessions[slot].take().expect("slot checked above");
                for sock in &mut s.socks {
                    let _ = poll.registry().deregister(sock);
                }
                free.push(slot);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    args: &Args,
    poll: &Poll,
    sessions: &mut Vec<Option<Session>>,
    free: &mut Vec<usize>,
) -> std::io::Result<()> {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        // A blocking connect on loopback (login time only, not in the measured steady state).
        let Ok(server) = std::net::TcpStream::connect(args.upstream) else {
            continue;
        };
        server.set_nonblocking(true)?;
        let server = TcpStream::from_std(server);
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let slot = free.pop().unwrap_or_else(|| {
            sessions.push(None);
            sessions.len() - 1
        });
        let mut session = Session {
            socks: [client, server],
            pending: Default::default(),
        };
        for (side, sock) in session.socks.iter_mut().enumerate() {
            poll.registry()
                .register(sock, token(slot, side), Interest::READABLE)?;
        }
        sessions[slot] = Some(session);
    }
}

/// Reads side `from` and writes what it read to the other side. False: the session ends.
fn forward(s: &mut Session, from: usize, buf: &mut [u8], poll: &Poll, slot: usize) -> bool {
    let to = 1 - from;
    if !s.pending[from].buf.is_empty() {
        return true; // still owed to `to`: read again once that is written (flush)
    }
    loop {
        let n = match s.socks[from].read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let written = match write_some(&mut s.socks[to], &buf[..n]) {
            Ok(w) => w,
            Err(_) => return false,
        };
        if written < n {
            s.pending[from].buf.extend_from_slice(&buf[written..n]);
            s.pending[from].at = 0;
            let interest = Interest::READABLE | Interest::WRITABLE;
            return poll
                .registry()
                .reregister(&mut s.socks[to], token(slot, to), interest)
                .is_ok();
        }
        if n < buf.len() {
            return true; // a short read emptied the receive queue
        }
    }
}

/// Writes what side `from` owes to its peer after the peer became writable. False: ends.
fn flush(s: &mut Session, from: usize, poll: &Poll, slot: usize) -> bool {
    let to = 1 - from;
    let p = &mut s.pending[from];
    if p.buf.is_empty() {
        return true;
    }
    match write_some(&mut s.socks[to], &p.buf[p.at..]) {
        Ok(w) => p.at += w,
        Err(_) => return false,
    }
    if p.at < p.buf.len() {
        return true;
    }
    p.buf.clear();
    p.at = 0;
    if poll
        .registry()
        .reregister(&mut s.socks[to], token(slot, to), Interest::READABLE)
        .is_err()
    {
        return false;
    }
    // The source was not read while this was owed: read what came meanwhile.
    let mut buf = vec![0u8; crate::BUF];
    forward(s, from, &mut buf, poll, slot)
}

/// Writes as much of `data` as the socket takes now (0 when it would block).
fn write_some(sock: &mut TcpStream, data: &[u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < data.len() {
        match sock.write(&data[at..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(w) => at += w,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}
