//! A client's byte stream: the startup packet (length word, body), then typed messages read
//! by the proxy's frame reader, each handed to every client-message decoder the proxy has.
//! Decoded messages must survive being written back and read again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud::session::statement_path::statement_text;
use pgshroud::protect::wire::{Bind, Parse};
use pgshroud::protocol::frame::{FrameBuffer, FrameError};
use pgshroud::protocol::startup::read_packet;
use pgshroud_fuzz::{run_ready, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut io = data;
    // The startup packet comes first; whatever it is, the rest is read as typed messages so
    // inputs without one still reach the decoders.
    let _ = run_ready(read_packet(&mut io));
    let mut reader = FrameBuffer::new(MAX_FRAME);
    loop {
        match run_ready(reader.read_frame(&mut io)) {
            Ok(Some(frame)) => decode(&frame),
            Ok(None) => break,
            Err(FrameError::TruncatedMessage | FrameError::TooLarge(..)) => break,
            Err(FrameError::BadLength(len)) => {
                assert!(len < 4, "a length of {len} is not bad");
                break;
            }
            Err(FrameError::Io(e)) => panic!("reading memory failed: {e}"),
        }
    }
});

/// Every decoder sees every frame: the proxy picks one by the type byte, but the decoders
/// must not trust that byte either.
fn decode(frame: &[u8]) {
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    assert_eq!(frame.len(), declared + 1, "frame split at the wrong place");
    let text = statement_text(frame);
    if let Ok(parse) = Parse::read(frame) {
        assert_eq!(Parse::read(&parse.write()).as_ref(), Ok(&parse));
        if frame[0] == b'P' {
            assert_eq!(text, Some(parse.query.as_slice()));
        }
    }
    if let Ok(mut bind) = Bind::read(frame) {
        assert_eq!(Bind::read(&bind.write()).as_ref(), Ok(&bind));
        let formats: Vec<_> = (0..bind.params.len())
            .map(|i| bind.param_format(i))
            .collect();
        bind.expand_param_formats();
        let expanded: Vec<_> = (0..bind.params.len())
            .map(|i| bind.param_format(i))
            .collect();
        assert_eq!(formats, expanded);
        assert_eq!(Bind::read(&bind.write()).as_ref(), Ok(&bind));
    }
}
