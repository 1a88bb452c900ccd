//! Arbitrary text read by PostgreSQL's own grammar (pg_query) and by the analyser: pgshroud
//! must never forward a text that PostgreSQL reads as touching a protected table the analysis
//! did not see. Forwarded means: the pre-filter says "no protected table" (the text passes
//! unparsed), or the analysis returns `Untouched`/`Protected`. For each such text PostgreSQL
//! reads, every protected table in PostgreSQL's reading must have passed the pre-filter and
//! be among the tables the analysis reports for that statement.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgshroud::analyze::{analyze, pg_reading, Analysis, ProtectedSchema};
use pgshroud_fuzz::{catalog, protection};

struct State {
    schema: ProtectedSchema,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let schema = protection().layout(&catalog()).schema;
        State { schema }
    })
}

/// PostgreSQL's reading recurses as deep as the text nests: on a stack that holds any input
/// libFuzzer makes (4 KiB by default).
fn read(sql: &str) -> Option<pg_reading::PgReading> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn_scoped(s, || pg_reading::read(sql).ok())
            .ok()?
            .join()
            .ok()?
    })
}

/// The protected (schema, table) a relation of PostgreSQL's reading names, if any
/// (unqualified names resolve to `public`, as the fixture's search path does).
fn protected(schema: &ProtectedSchema, rel: &pg_reading::PgRelation) -> Option<(String, String)> {
    let table = rel.name.to_lowercase();
    let in_schema = rel.schema.as_deref().unwrap_or("public").to_lowercase();
    schema
        .has_protected_table(&in_schema, &table)
        .then_some((in_schema, table))
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if sql.contains('\0') {
        return;
    }
    let s = state();
    let passes_unparsed = !s.schema.mentions_protected_table(sql);
    let analysis = analyze(sql, &s.schema);
    let statements = match &analysis {
        Analysis::Refused(_) if !passes_unparsed => return,
        Analysis::Refused(_) => None,
        Analysis::Untouched { statements } | Analysis::Protected { statements } => {
            Some(statements)
        }
    };
    // PostgreSQL rejects what it cannot read; nothing of it runs.
    let Some(reading) = read(sql) else {
        return;
    };
    for (n, statement) in reading.statements.iter().enumerate() {
        for rel in statement.relations.iter().filter(|r| !r.cte) {
            let Some(pair) = protected(&s.schema, rel) else {
                continue;
            };
            assert!(
                !passes_unparsed,
                "the pre-filter passes a text PostgreSQL reads as touching {pair:?}"
            );
            let Some(statements) = statements else {
                continue;
            };
            // A text sqlparser could not parse and PostgreSQL reads as naming no protected
            // table has no statements of sqlparser's.
            let seen = statements.get(n).is_some_and(|info| {
                info.tables.contains(&pair) || info.changed_tables.contains(&pair)
            });
            assert!(
                seen,
                "PostgreSQL reads {pair:?} in statement {n}, which the analysis forwards without it"
            );
        }
    }
});
