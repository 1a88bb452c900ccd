//! `ONLY t` in reads: `SELECT ... FROM ONLY t` and `DECLARE c CURSOR FOR SELECT ... FROM ONLY
//! t` (what `pg_dump --inserts` sends) read the table's own rows, a subset of what `t` reads,
//! through the same columns. sqlparser does not read `ONLY` in queries, so such a text is
//! analysed with each `ONLY` keyword before a relation blanked to spaces (byte offsets, and so
//! every rewrite site, unchanged). Writes with `ONLY` are not blanked: still refused.

use super::pg_reading::PgReading;
use super::StatementKind;

/// The text with every `ONLY` that PostgreSQL reads before a relation of a read blanked, or
/// `None` when there is none (or one in a statement that is not a read).
pub fn blanked(sql: &str, reading: &PgReading) -> Option<String> {
    let mut spans = Vec::new();
    for statement in &reading.statements {
        let only: Vec<_> = statement
            .relations
            .iter()
            .filter(|r| !r.inh && !r.cte)
            .collect();
        if only.is_empty() {
            continue;
        }
        if !is_read(sql, reading, statement.span.start, statement.kind) {
            return None;
        }
        for relation in only {
            // The token right before the name: `ONLY` itself (a comment or parenthesis in
            // between leaves the text as it is, and so refused).
            let before = reading
                .tokens
                .iter()
                .take_while(|t| t.end <= relation.location)
                .last()?;
            if !sql.get(before.clone())?.eq_ignore_ascii_case("only") {
                return None;
            }
            spans.push(before.clone());
        }
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = sql.as_bytes().to_vec();
    for span in spans {
        out[span].fill(b' ');
    }
    String::from_utf8(out).ok()
}

/// A SELECT, or a DECLARE of a cursor (PostgreSQL's reading classifies it as other).
fn is_read(sql: &str, reading: &PgReading, start: usize, kind: StatementKind) -> bool {
    match kind {
        StatementKind::Select => true,
        StatementKind::Other => reading
            .tokens
            .iter()
            .find(|t| t.start >= start && !is_comment(sql, t))
            .and_then(|t| sql.get(t.clone()))
            .is_some_and(|word| word.eq_ignore_ascii_case("declare")),
        _ => false,
    }
}

fn is_comment(sql: &str, token: &std::ops::Range<usize>) -> bool {
    sql.get(token.clone())
        .is_some_and(|t| t.starts_with("--") || t.starts_with("/*"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::pg_reading::read;

    fn blank(sql: &str) -> Option<String> {
        blanked(sql, &read(sql).unwrap())
    }

    #[test]
    fn only_in_reads_is_blanked_in_place() {
        let sql = "DECLARE _pg_dump_cursor CURSOR FOR SELECT id, email FROM ONLY public.customers";
        let b = blank(sql).unwrap();
        assert_eq!(b.len(), sql.len());
        assert!(b.ends_with("FROM      public.customers"), "{b}");
        assert_eq!(
            blank("select * from only customers c join only t on true").unwrap(),
            "select * from      customers c join      t on true"
        );
    }

    #[test]
    fn writes_and_texts_without_only_are_left_alone() {
        assert_eq!(blank("select * from customers"), None);
        assert_eq!(blank("update only customers set email = null"), None);
        assert_eq!(blank("delete from only customers"), None);
        assert_eq!(blank("select * from only /* x */ customers"), None);
    }
}
