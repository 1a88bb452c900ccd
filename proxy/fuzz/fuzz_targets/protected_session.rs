//! A whole protected session: arbitrary sequences of client and server messages through the
//! statement path of a caller under rules with protected columns of every type (refusals,
//! literal and parameter encryption, result rewriting, COPY, the catalog look-up, max_rows).
//! Input: a byte choosing the caller, then messages each preceded by a direction byte (even:
//! client to server, odd: server to client). Whatever the session sends in a message's place
//! must be whole messages.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use pgshroud::intercept::{StatementPath, Verdict};
use pgshroud::metrics::Metrics;
use pgshroud::protect::live::LiveProtection;
use pgshroud::protect::policy::Caller;
use pgshroud::protect::session::ProtectedSession;
use pgshroud::protocol::frame::{check_frame, FrameCheck};
use pgshroud_fuzz::{catalog, frames, protection, MAX_FRAME, USERS};

fuzz_target!(|data: &[u8]| {
    let Some((&who, mut rest)) = data.split_first() else {
        return;
    };
    let live = LiveProtection::new(Path::new("fuzz-rules.toml"), protection());
    let caller = Caller {
        user: USERS[usize::from(who) % USERS.len()].to_owned(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: IpAddr::from([127, 0, 0, 1]),
    };
    let metrics = Arc::new(Metrics::new());
    let session = ProtectedSession::new(Arc::new(live), caller, catalog(), metrics.clone());
    let mut path = StatementPath::protected(session).with_metrics(metrics);
    while let Some((&direction, after)) = rest.split_first() {
        let FrameCheck::Complete(n) = check_frame(after, MAX_FRAME) else {
            return;
        };
        let (frame, next) = after.split_at(n);
        rest = next;
        let verdict = if direction % 2 == 0 {
            path.client_message(frame)
        } else {
            path.server_message(frame)
        };
        if let Verdict::Replace(bytes) = verdict {
            let whole: usize = frames(&bytes).map(<[u8]>::len).sum();
            assert_eq!(whole, bytes.len(), "a replacement is not whole messages");
        }
    }
});
