//! The check that sqlparser's analysis read a text as PostgreSQL will: the same tokens and
//! statement boundaries, the same statement kinds, the same protected tables (and no `ONLY`
//! it cannot see), and every value it rewrites at a constant PostgreSQL decodes to the same
//! value. Any difference refuses the text: no decision rests on a reading the server does not
//! make.

use std::collections::BTreeSet;
use std::ops::Range;

use super::pg_reading::{PgReading, PgStatement};
use super::refusal::{analysed_differently, read_differently};
use super::scope::fold_name;
use super::search_path::Resolution;
use super::{ProtectedSchema, Refusal, StatementInfo, StatementKind, FEATURE_NOT_SUPPORTED};

/// What sqlparser's tokenizer saw, in byte offsets.
pub struct SqlparserTokens {
    /// Start of every token, comments included, whitespace excluded.
    pub starts: Vec<usize>,
    /// Every `;` token.
    pub semicolons: Vec<usize>,
}

/// Refuses unless both readings agree; on agreement, kinds of statements outside reads and
/// writes take PostgreSQL's classification (sqlparser's is coarser for DDL and utilities).
pub fn check(
    pg: &PgReading,
    tokens: &SqlparserTokens,
    infos: &mut [StatementInfo],
    schema: &ProtectedSchema,
) -> Result<(), Refusal> {
    if let Some(at) = pg.new_number_form {
        return Err(analysed_differently(&format!(
            "the number at byte {at} is written in a form (0x.., 0o.., 0b.., digits with _) \
             that PostgreSQL servers before 16 read differently; write it in decimal"
        )));
    }
    if tokens.semicolons != pg.semicolons {
        return Err(read_differently(
            "where one statement ends and the next begins",
        ));
    }
    if let Some(&at) = tokens.starts.iter().find(|&&at| !pg.token_starts_at(at)) {
        return Err(read_differently(&format!(
            "where a token begins, at byte {at}"
        )));
    }
    if infos.len() != pg.statements.len() {
        return Err(read_differently(&format!(
            "PostgreSQL reads {} statement(s) where the analysis read {}",
            pg.statements.len(),
            infos.len()
        )));
    }
    for (n, (info, pgs)) in infos.iter_mut().zip(&pg.statements).enumerate() {
        statement(n + 1, info, pgs, pg, schema)?;
    }
    Ok(())
}

/// Reads and writes: the kinds whose analysis decides what the proxy rewrites and allows.
fn moves_data(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Select
            | StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete
            | StatementKind::Merge
            | StatementKind::Copy
    )
}

fn statement(
    n: usize,
    info: &mut StatementInfo,
    pgs: &PgStatement,
    pg: &PgReading,
    schema: &ProtectedSchema,
) -> Result<(), Refusal> {
    if info.kind != pgs.kind {
        if moves_data(info.kind) || moves_data(pgs.kind) {
            return Err(analysed_differently(&format!(
                "PostgreSQL reads statement {n} as {} where the analysis read {}",
                pgs.kind.as_str(),
                info.kind.as_str()
            )));
        }
        info.kind = pgs.kind;
    }
    if info.kind == StatementKind::Ddl {
        // DDL changes every protected table it names anywhere, as PostgreSQL decodes the
        // names and bodies (a created function's body included).
        for text in &pgs.strings {
            for pair in schema.tables_named_in(text) {
                if !info.changed_tables.contains(&pair) {
                    info.changed_tables.push(pair);
                }
            }
        }
    }
    relations(n, info, pgs, schema)?;
    if info.copy.is_some() {
        copy_options(pgs)?;
    }
    literals(n, info, pgs, pg)?;
    params(n, info, pgs)
}

/// COPY options that change how the row bytes are read or written, as PostgreSQL's grammar
/// names them (the pre-9.0 forms included): the proxy frames and rewrites rows with
/// `format`, `delimiter`, `null`, `header`, `quote` and `escape`; `freeze` changes nothing it
/// reads; `encoding` is followed when it is UTF8 (the only encoding the proxy analyses in).
/// Every other option (`force_null`, `force_not_null`, `force_quote`, `default`, `on_error`,
/// ...) changes what a field means or how it is quoted, so it is refused, never ignored.
fn copy_options(pgs: &PgStatement) -> Result<(), Refusal> {
    for (name, value) in &pgs.copy_options {
        let followed = match name.as_str() {
            "format" | "delimiter" | "null" | "header" | "quote" | "escape" | "freeze" => true,
            "encoding" => value.as_deref().is_some_and(is_utf8_name),
            _ => false,
        };
        if !followed {
            return Err(Refusal {
                sqlstate: FEATURE_NOT_SUPPORTED,
                message: format!(
                    "pgshroud does not follow the COPY option {} on a table with encrypted \
                     columns: it changes how the rows' fields are read or written; use only \
                     FORMAT, DELIMITER, NULL, HEADER, QUOTE, ESCAPE, FREEZE and ENCODING 'UTF8'",
                    name.to_ascii_uppercase()
                ),
                column: None,
            });
        }
    }
    Ok(())
}

/// Whether PostgreSQL reads `name` as the UTF8 encoding (it ignores case and every character
/// but letters and digits: `utf-8`, `UTF_8`, `unicode`).
fn is_utf8_name(name: &str) -> bool {
    let plain: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    plain == "utf8" || plain == "unicode"
}

/// The protected tables of both readings must be the same (a name PostgreSQL reads as a WITH
/// query is not a table); `ONLY` (which sqlparser does not read in queries) must not be
/// applied to a protected table in a read or write.
fn relations(
    n: usize,
    info: &StatementInfo,
    pgs: &PgStatement,
    schema: &ProtectedSchema,
) -> Result<(), Refusal> {
    let mut theirs = BTreeSet::new();
    for rel in &pgs.relations {
        if rel.cte {
            continue;
        }
        let name = fold_name(&rel.name);
        let parts: Vec<String> = rel
            .schema
            .iter()
            .map(|s| fold_name(s))
            .chain([name])
            .collect();
        let Some(resolution) = schema.resolve_table(&parts) else {
            continue;
        };
        if !protected(schema, &resolution) {
            continue;
        }
        let (s, t) = pair(resolution);
        if !rel.inh && moves_data(pgs.kind) {
            return Err(analysed_differently(&format!(
                "statement {n} reads ONLY {s}.{t} (without its child tables), a form the \
                 analysis does not read; name the table without ONLY"
            )));
        }
        theirs.insert((s, t));
    }
    let ours: BTreeSet<(String, String)> = info
        .tables
        .iter()
        .chain(&info.changed_tables)
        .filter(|(s, t)| schema.has_protected_table(s, t))
        .cloned()
        .collect();
    if let Some((s, t)) = theirs.difference(&ours).next() {
        return Err(analysed_differently(&format!(
            "PostgreSQL reads table {s}.{t} in statement {n} where the analysis does not"
        )));
    }
    if moves_data(pgs.kind) {
        if let Some((s, t)) = ours.difference(&theirs).next() {
            return Err(analysed_differently(&format!(
                "the analysis reads table {s}.{t} in statement {n} where PostgreSQL does not"
            )));
        }
    }
    Ok(())
}

fn protected(schema: &ProtectedSchema, r: &Resolution) -> bool {
    match r {
        Resolution::Table(s, t) => schema.has_protected_table(s, t),
        // Unsure is only ever returned for the name of a protected table.
        Resolution::Unsure { .. } => true,
    }
}

fn pair(r: Resolution) -> (String, String) {
    match r {
        Resolution::Table(s, t)
        | Resolution::Unsure {
            schema: s,
            table: t,
            ..
        } => (s, t),
    }
}

/// Every value the rewrite replaces lies on PostgreSQL's token boundaries and holds one
/// constant PostgreSQL decodes to the value the analysis will encrypt.
fn literals(
    n: usize,
    info: &StatementInfo,
    pgs: &PgStatement,
    pg: &PgReading,
) -> Result<(), Refusal> {
    let differ = || {
        read_differently(&format!(
            "the value written or compared to an encrypted column in statement {n}"
        ))
    };
    // By location: each site's first constant is one binary search, not a scan of every
    // constant (an IN list of thousands of values made this quadratic).
    let mut constants: Vec<_> = pgs.constants.iter().collect();
    constants.sort_by_key(|c| c.location);
    for site in &info.literals {
        if site.span.is_empty() {
            // A value the rewrite inserts (`WHERE flag` becomes `(flag = <true>)`): after a
            // token PostgreSQL reads.
            pg.token_ends_at(site.span.start)
                .then_some(())
                .ok_or_else(differ)?;
            continue;
        }
        on_boundaries(&site.span, pg).ok_or_else(differ)?;
        // The first constant of the value expression is the value; later ones are type
        // modifiers (`CAST('x' AS varchar(10))`).
        let first = constants.partition_point(|c| c.location < site.span.start);
        let constant = constants
            .get(first)
            .filter(|c| site.span.contains(&c.location))
            .ok_or_else(differ)?;
        if constant.value != site.value {
            return Err(differ());
        }
    }
    for edit in &info.edits {
        on_boundaries(&edit.span, pg).ok_or_else(differ)?;
    }
    Ok(())
}

/// A replaced range starts and ends where PostgreSQL's tokens do; an insertion (empty range)
/// sits between two of them.
fn on_boundaries(span: &Range<usize>, pg: &PgReading) -> Option<()> {
    let fits = if span.is_empty() {
        pg.token_ends_at(span.start) || pg.token_starts_at(span.start)
    } else {
        pg.token_starts_at(span.start) && pg.token_ends_at(span.end)
    };
    fits.then_some(())
}

/// Every `$n` the analysis encrypts is PostgreSQL's `$n` at that place.
fn params(n: usize, info: &StatementInfo, pgs: &PgStatement) -> Result<(), Refusal> {
    // PostgreSQL's `$n` sorted by (number, location): each site is one binary search, not a
    // scan of every parameter (65,535 of each made this quadratic).
    let mut read: Vec<(usize, usize)> = pgs.params.iter().map(|p| (p.number, p.location)).collect();
    read.sort_unstable();
    for site in &info.params {
        let number = site.index + 1;
        let at = read.partition_point(|&p| p < (number, site.span.start));
        let found = read
            .get(at)
            .is_some_and(|&(m, location)| m == number && site.span.contains(&location));
        if !found {
            return Err(read_differently(&format!(
                "parameter ${} of statement {n}",
                site.index + 1
            )));
        }
    }
    Ok(())
}
