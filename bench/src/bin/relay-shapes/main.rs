//! Relay shapes (issue 25, the "I/O shapes" notes in bench/RESULTS.md): a bare TCP byte relay
//! in front of PostgreSQL, in several I/O shapes, to measure what each shape costs per
//! transaction with no protocol work at all: an upper bound for what a proxy of that shape
//! could reach. It reads nothing of what it forwards (login included: the client's SCRAM
//! exchange goes through to PostgreSQL as bytes), so it is not a proxy and has no place in
//! production; it is measured beside PgBouncer and pgshroud by bench/probe/.
//!
//! Shapes (`--shape`):
//! - `tokio`: one current-thread tokio runtime, one task per session copying both directions
//!   (`copy_bidirectional`): pgshroud's session shape since the relay helper's change;
//!   `tokio-split`: two tasks per session, one per direction.
//! - `epoll`: one thread, one edge-triggered epoll loop of our own (mio), every ready socket
//!   read and its bytes written to the peer in the same wake: PgBouncer's libevent shape.
//! - `uring`: one thread, one io_uring; a recv is kept pending per direction, completions are
//!   handled in batches and every send and re-armed recv of a batch goes in with one
//!   `io_uring_enter` (single issuer, deferred task work).
//!
//! Usage: relay-shapes --shape tokio|tokio-split|epoll|uring --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT

mod epoll;
#[cfg(test)]
mod tests;
mod tokio_task;
mod uring;

use std::net::SocketAddr;

/// Bytes one read takes at most (PgBouncer's default pkt_buf is 4 KiB; pgbench -S messages are
/// far smaller, so this only matters for the login and a COPY).
pub const BUF: usize = 16 * 1024;

pub struct Args {
    pub shape: String,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let (mut shape, mut listen, mut upstream) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let addr = || {
            value
                .parse::<SocketAddr>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--shape" => shape = Some(value.clone()),
            "--listen" => listen = Some(addr()?),
            "--upstream" => upstream = Some(addr()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        shape: shape.ok_or("--shape tokio|tokio-split|epoll|uring is required")?,
        listen: listen.ok_or("--listen ADDR is required")?,
        upstream: upstream.ok_or("--upstream ADDR is required")?,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("relay-shapes: {e}");
            std::process::exit(2);
        }
    };
    let result = match args.shape.as_str() {
        "tokio" => tokio_task::run(&args, false),
        "tokio-split" => tokio_task::run(&args, true),
        "epoll" => epoll::run(&args),
        "uring" => uring::run(&args),
        other => Err(std::io::Error::other(format!("unknown shape {other}"))),
    };
    if let Err(e) = result {
        eprintln!("relay-shapes: {e}");
        std::process::exit(1);
    }
}
