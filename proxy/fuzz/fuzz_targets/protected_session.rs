//! A whole protected session: arbitrary sequences of client and server messages through the
//! statement path of a caller under rules with protected columns of every type (refusals,
//! literal and parameter encryption, result rewriting, COPY, the catalog look-up, max_rows).
//! Input: a byte choosing the caller, then messages each preceded by a direction byte (even:
//! client to server, odd: server to client). Whatever the session sends in a message's place
//! must be whole messages.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pgshroud::session::statement_path::{StatementPath, Verdict};
use pgshroud::ops::metrics::Metrics;
use pgshroud::protect::live::LiveProtection;
use pgshroud::protect::policy::Caller;
use pgshroud::protect::session::ProtectedSession;
use pgshroud::protocol::frame::{check_frame, FrameCheck};
use pgshroud_fuzz::{catalog, frames, protection, MAX_FRAME, USERS};

/// The shared state every session of a proxy process shares, built once: rebuilding it per
/// input would spend most of the time parsing rules and registering metrics. Its plan cache
/// only saves work (a plan depends on nothing but the text and the layout).
fn shared() -> &'static (Arc<LiveProtection>, Arc<Metrics>) {
    static SHARED: OnceLock<(Arc<LiveProtection>, Arc<Metrics>)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let live = LiveProtection::new(Path::new("fuzz-rules.toml"), protection());
        (Arc::new(live), Arc::new(Metrics::new()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, mut rest)) = data.split_first() else {
        return;
    };
    let (live, metrics) = shared();
    let caller = Caller {
        user: USERS[usize::from(who) % USERS.len()].to_owned(),
        pg_roles: Vec::new(),
        cert_subject: None,
        addr: IpAddr::from([127, 0, 0, 1]),
    };
    let session = ProtectedSession::new(live.clone(), caller, catalog(), metrics.clone());
    let mut path = StatementPath::protected(session).with_metrics(metrics.clone());
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
