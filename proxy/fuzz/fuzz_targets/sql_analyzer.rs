//! Arbitrary text as a statement: the pre-filter, the analyser and the planner (which splices
//! ciphertext into the text at source spans) over a schema with protected columns of every
//! type, the audit normaliser, and the other readers that ask PostgreSQL's grammar (server
//! code given SQL text, catalog views that show stored values, the tracker's statements).
//! The pre-filters may only say "no" for text their reader finds nothing in.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pgshroud::analyze::{analyze, exposing, sql_text, statement_kinds, Analysis};
use pgshroud::protocol::tracker::sql_effects;
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
    // The pre-check's "no" must be certain: such a text holds no call of a function that
    // runs SQL text (a text PostgreSQL's grammar does not read runs nothing either).
    let calls = sql_text::sql_text_calls(sql);
    if !sql_text::may_run_sql_text(sql) {
        match &calls {
            sql_text::SqlText::None => {}
            sql_text::SqlText::Unreadable(what) if what.contains("cannot parse") => {}
            other => panic!("the pre-check missed {other:?}"),
        }
    }
    exposing::exposing_object(sql).ok();
    sql_effects(sql);
    let normalized = normalize(sql);
    normalized.whole();
    for i in 0..=normalized.statements.len() {
        normalized.statement(i);
    }
});
