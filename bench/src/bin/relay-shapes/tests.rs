//! Each shape relays bytes both ways unchanged and passes a close on: an echo server stands in
//! for PostgreSQL (the relay reads nothing of what it forwards, so any bytes will do).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::Args;

/// An upstream that echoes every byte back until its client closes, then reports the total.
fn echo_upstream() -> (SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n;
                    if sock.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(total);
    });
    (addr, rx)
}

fn relay_round_trip(shape: &str) {
    let (upstream, echoed) = echo_upstream();
    let listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args = Args {
        shape: shape.to_string(),
        listen,
        upstream,
    };
    std::thread::spawn(move || match args.shape.as_str() {
        "tokio" => crate::tokio_task::run(&args, false),
        "tokio-split" => crate::tokio_task::run(&args, true),
        "epoll" => crate::epoll::run(&args),
        _ => crate::uring::run(&args),
    });
    let mut client = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            TcpStream::connect(listen).ok()
        })
        .expect("the relay listens");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // More than the sockets' buffers on the way hold, and read only after a pause: the relay's
    // writes to the client must wait (would block), so its held-back bytes are tested too.
    let sent: Vec<u8> = (0..32 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut writer = client.try_clone().unwrap();
    let data = sent.clone();
    let w = std::thread::spawn(move || writer.write_all(&data).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let mut got = vec![0u8; sent.len()];
    client.read_exact(&mut got).unwrap();
    w.join().unwrap();
    assert!(got == sent, "{shape}: the bytes came back changed");
    drop(client);
    let total = echoed
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream saw the client's close");
    assert_eq!(total, sent.len(), "{shape}");
}

#[test]
fn tokio_relays_both_ways_and_closes() {
    relay_round_trip("tokio");
}

#[test]
fn tokio_split_relays_both_ways_and_closes() {
    relay_round_trip("tokio-split");
}

#[test]
fn epoll_relays_both_ways_and_closes() {
    relay_round_trip("epoll");
}

#[test]
fn uring_relays_both_ways_and_closes() {
    relay_round_trip("uring");
}
