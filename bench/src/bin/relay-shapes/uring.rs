//! Shape `uring`: one thread, one io_uring (single issuer, deferred task work: completions are
//! only worked while this thread waits in `io_uring_enter`, so arrivals do not interrupt it).
//! Each direction of a session keeps one recv pending into its own buffer; a completed recv
//! queues a send of those bytes to the peer, a completed send re-arms the recv. All that a
//! batch of completions queues goes to the kernel with the next wait, in one system call.
//!
//! The `unsafe` here is io_uring's contract (the kernel writes into and reads from buffers we
//! hand it): every buffer is a `Box` owned by its session slot, and a slot is freed only when
//! it has no operation in flight. This is a bench experiment; the proxy has no `unsafe`.

use std::io::ErrorKind;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

use crate::{Args, BUF};

const ACCEPT: u64 = u64::MAX;
const OP_RECV: u64 = 0;
const OP_SEND: u64 = 1;

/// One direction: bytes received from side `i` and being sent to side `1 - i`.
struct Dir {
    buf: Box<[u8; BUF]>,
    len: usize,
    sent: usize,
}

struct Session {
    /// [client, server]
    socks: [TcpStream; 2],
    dirs: [Dir; 2],
    in_flight: u32,
    closing: bool,
}

fn user_data(slot: usize, side: usize, op: u64) -> u64 {
    ((slot as u64) << 2) | ((side as u64) << 1) | op
}

struct Loop {
    ring: IoUring,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
}

impl Loop {
    /// Queues an entry, submitting what is queued first if the queue is full.
    fn push(&mut self, sqe: squeue::Entry) -> std::io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to lives in a boxed session slot that is
            // not freed while its operation is in flight (`in_flight`), and the listener and
            // sockets outlive their operations the same way.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_recv(&mut self, slot: usize, side: usize) -> std::io::Result<()> {
        let s = self.sessions[slot].as_mut().expect("live slot");
        let fd = types::Fd(s.socks[side].as_raw_fd());
        let ptr = s.dirs[side].buf.as_mut_ptr();
        s.in_flight += 1;
        let sqe = opcode::Recv::new(fd, ptr, BUF as u32)
            .build()
            .user_data(user_data(slot, side, OP_RECV));
        self.push(sqe)
    }

    /// Sends what direction `side` holds and has not sent yet, to the other side.
    fn arm_send(&mut self, slot: usize, side: usize) -> std::io::Result<()> {
        let s = self.sessions[slot].as_mut().expect("live slot");
        let fd = types::Fd(s.socks[1 - side].as_raw_fd());
        let d = &s.dirs[side];
        // SAFETY (pointer arithmetic): `sent < len <= BUF`.
        let ptr = unsafe { d.buf.as_ptr().add(d.sent) };
        let n = (d.len - d.sent) as u32;
        s.in_flight += 1;
        let sqe = opcode::Send::new(fd, ptr, n)
            .build()
            .user_data(user_data(slot, side, OP_SEND));
        self.push(sqe)
    }

    /// The session ends: shutting both sockets down completes their pending recvs (a close
    /// would not: the ring holds a reference to each socket while a recv waits).
    fn close(&mut self, slot: usize) {
        let s = self.sessions[slot].as_mut().expect("live slot");
        if !s.closing {
            s.closing = true;
            for sock in &s.socks {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        if s.in_flight == 0 {
            self.sessions[slot] = None; // the sockets close on drop
            self.free.push(slot);
        }
    }

    fn completed(&mut self, ud: u64, res: i32) -> std::io::Result<()> {
        let (slot, side, op) = ((ud >> 2) as usize, ((ud >> 1) & 1) as usize, ud & 1);
        let s = self.sessions[slot]
            .as_mut()
            .expect("completion of a live slot");
        s.in_flight -= 1;
        if s.closing || res <= 0 {
            self.close(slot);
            return Ok(());
        }
        let d = &mut s.dirs[side];
        if op == OP_RECV {
            d.len = res as usize;
            d.sent = 0;
            return self.arm_send(slot, side);
        }
        d.sent += res as usize;
        if d.sent < d.len {
            return self.arm_send(slot, side); // a short send: the rest
        }
        self.arm_recv(slot, side)
    }

    fn accepted(&mut self, fd: i32, upstream: std::net::SocketAddr) -> std::io::Result<()> {
        use std::os::fd::FromRawFd;
        // SAFETY: the accept completion hands us a new descriptor that nothing else owns.
        let client = unsafe { TcpStream::from_raw_fd(fd) };
        // A blocking connect on loopback (login time only, not in the measured steady state).
        let Ok(server) = TcpStream::connect(upstream) else {
            return Ok(());
        };
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let dir = || Dir {
            buf: Box::new([0u8; BUF]),
            len: 0,
            sent: 0,
        };
        let session = Session {
            socks: [client, server],
            dirs: [dir(), dir()],
            in_flight: 0,
            closing: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.sessions.push(None);
                self.sessions.len() - 1
            }
        };
        self.sessions[slot] = Some(session);
        self.arm_recv(slot, 0)?;
        self.arm_recv(slot, 1)
    }
}

pub fn run(args: &Args) -> std::io::Result<()> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(512)?;
    let listener = TcpListener::bind(args.listen)?;
    let mut lp = Loop {
        ring,
        sessions: Vec::new(),
        free: Vec::new(),
    };
    let accept = opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(ACCEPT);
    lp.push(accept.clone())?;
    let mut batch: Vec<(u64, i32)> = Vec::with_capacity(512);
    loop {
        match lp.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        batch.extend(lp.ring.completion().map(|c| (c.user_data(), c.result())));
        for (ud, res) in batch.drain(..) {
            if ud == ACCEPT {
                if res >= 0 {
                    lp.accepted(res, args.upstream)?;
                }
                lp.push(accept.clone())?;
            } else {
                lp.completed(ud, res)?;
            }
        }
    }
}
