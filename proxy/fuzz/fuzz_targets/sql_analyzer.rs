//! Arbitrary text as a statement: the pre-filter, the analyser and the planner (which splices
//! ciphertext into the text at source spans) over a schema with protected columns of every
//! type, and the audit normaliser. The pre-filter may only say "no" for text the analyser
//! finds touches no protected column.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pgshroud::analyze::{analyze, statement_kinds, Analysis};
use pgshroud::audit::normalize::normalize;
use pgshroud::protect::catalog::Catalog;
use pgshroud::protect::engine::{Layout, Protection};
use pgshroud_fuzz::{catalog, protection};

struct State {
    protection: Arc<Protection>,
    catalog: Catalog,
    layout: Layout,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let protection = protection();
        let catalog = catalog();
        let layout = protection.layout(&catalog);
        State {
            protection,
            catalog,
            layout,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let s = state();
    let analysis = analyze(sql, &s.layout.schema);
    if !s.layout.mentions_protected(sql) {
        match &analysis {
            Analysis::Protected { .. } => {
                panic!("pre-filter passed a text that touches a protected column: {analysis:?}")
            }
            Analysis::Refused(r) => assert!(
                r.column.is_none(),
                "pre-filter passed a text refused for a protected column: {r:?}"
            ),
            Analysis::Untouched { .. } => {}
        }
    }
    s.protection.plan(sql, &s.layout, &s.catalog);
    statement_kinds(sql);
    let normalized = normalize(sql);
    normalized.whole();
    for i in 0..=normalized.statements.len() {
        normalized.statement(i);
    }
});
