//! The untyped packets a client sends before its session (SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage), through the size-capped reader and the body parser. A
//! parsed StartupMessage re-encoded for upstream must parse to the same parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud::protocol::startup::{parse_packet, read_packet, StartupPacket, MAX_STARTUP_PACKET};
use pgshroud_fuzz::run_ready;

fuzz_target!(|data: &[u8]| {
    let mut io = data;
    if let Ok(packet) = run_ready(read_packet(&mut io)) {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        assert!((8..=MAX_STARTUP_PACKET).contains(&len));
        assert_eq!(io.len(), data.len() - len, "read past the packet");
        assert_eq!(parse_packet(&data[4..len]).ok(), Some(packet));
    }
    let body = data.get(4..).unwrap_or_default();
    if let Ok(StartupPacket::Startup(message)) = parse_packet(body) {
        let _ = (
            message.user(),
            message.database(),
            message.protocol_options(),
        );
        let encoded = message.encode_v3();
        let Ok(StartupPacket::Startup(again)) = parse_packet(&encoded[4..]) else {
            panic!("the upstream startup packet does not parse");
        };
        assert_eq!(again.version.major, 3);
        assert_eq!(again.version.minor, 0);
        assert!(again.protocol_options().is_empty());
        let mut expected = message.params.clone();
        expected.retain(|k, _| !k.starts_with("_pq_."));
        assert_eq!(again.params, expected);
    }
});
