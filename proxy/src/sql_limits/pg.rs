//! PostgreSQL's grammar (libpg_query) within limits: the nesting of a text is bounded from
//! PostgreSQL's own scanner's tokens (the scanner is a loop, never recursive) before the
//! grammar runs, and the grammar runs on a stack sized for that bound. Every reading of a text
//! by PostgreSQL's grammar goes through [`parse`]: the tracker's, the audit normaliser's and the
//! schema-change checks' run in pass-through too, where no analysis has bounded the text first.

use pg_query::protobuf::{KeywordKind, ScanResult, Token};

use super::{bound_of, with_stack_for, Class, MAX_NESTING};

/// Why [`parse`] gave no tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsed {
    /// PostgreSQL's scanner or grammar rejects the text: the server runs none of it.
    Rejected,
    /// The text nests deeper than [`MAX_NESTING`] (or no thread with a stack for it could be
    /// started): pgshroud cannot read it safely, though the server may run it.
    TooDeep,
}

/// PostgreSQL's grammar on `sql`, on a stack sized for how deeply the text nests; texts
/// nesting deeper than [`MAX_NESTING`] are not parsed at all.
pub fn parse(sql: &str) -> Result<pg_query::ParseResult, Unparsed> {
    let scanned = pg_query::scan(sql).map_err(|_| Unparsed::Rejected)?;
    let bound = nesting_bound(&scanned);
    if bound > MAX_NESTING {
        return Err(Unparsed::TooDeep);
    }
    with_stack_for(bound, || pg_query::parse(sql))
        .ok_or(Unparsed::TooDeep)?
        .map_err(|_| Unparsed::Rejected)
}

/// PostgreSQL's grammar on `sql`, then `read` on the tree, both on the stack sized for the
/// text: for readers that walk the tree recursively (or turn it into another tree), whose
/// recursion, like dropping the tree, costs stack per level. [`parse`] hands the tree to the
/// caller's stack, where a walk near [`MAX_NESTING`] deep overflowed a session thread's.
pub fn parse_with<T: Send>(
    sql: &str,
    read: impl FnOnce(pg_query::ParseResult) -> T + Send,
) -> Result<T, Unparsed> {
    let scanned = pg_query::scan(sql).map_err(|_| Unparsed::Rejected)?;
    let bound = nesting_bound(&scanned);
    if bound > MAX_NESTING {
        return Err(Unparsed::TooDeep);
    }
    with_stack_for(bound, || pg_query::parse(sql).map(read))
        .ok_or(Unparsed::TooDeep)?
        .map_err(|_| Unparsed::Rejected)
}

/// The nesting bound of a text from PostgreSQL's scanner's tokens, counted as
/// [`super::nesting_bound`] counts sqlparser's.
pub fn nesting_bound(scanned: &ScanResult) -> usize {
    bound_of(
        scanned
            .tokens
            .iter()
            .map(|t| class_of(t.token, t.keyword_kind)),
    )
}

fn class_of(token: i32, keyword_kind: i32) -> Class {
    const LEAVES: [Token; 9] = [
        Token::Ident,
        Token::Uident,
        Token::Fconst,
        Token::Sconst,
        Token::Usconst,
        Token::Bconst,
        Token::Xconst,
        Token::Iconst,
        Token::Param,
    ];
    let Ok(token) = Token::try_from(token) else {
        return Class::Other;
    };
    match token {
        Token::SqlComment | Token::CComment => Class::Skip,
        Token::Ascii40 => Class::OpenParen,
        Token::Ascii41 => Class::CloseParen,
        Token::Ascii91 => Class::OpenBracket,
        Token::Ascii93 => Class::CloseBracket,
        Token::Ascii44 | Token::Ascii59 => Class::Separator,
        Token::Ascii46 => Class::Dot,
        Token::Case => Class::Case,
        Token::EndP => Class::End,
        Token::When | Token::Then | Token::Else => Class::CaseSeparator,
        Token::Union | Token::Intersect | Token::Except => Class::SetOperation,
        // A keyword used as a name is a keyword token; counting it as an operator only
        // raises the bound.
        t if LEAVES.contains(&t) && keyword_kind == KeywordKind::NoKeyword as i32 => Class::Leaf,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(sql: &str) -> usize {
        nesting_bound(&pg_query::scan(sql).unwrap())
    }

    #[test]
    fn counts_as_the_sqlparser_bound_does() {
        let chain = format!("SELECT 1{}", " + 1".repeat(300));
        assert!(bound(&chain) >= 300);
        let groups = format!("SELECT {}1{}", "(1 + ".repeat(100), ")".repeat(100));
        assert!(bound(&groups) >= 400);
        let arrays = format!("SELECT {}1{}", "ARRAY[".repeat(100), "]".repeat(100));
        assert!(bound(&arrays) >= 400);
        let rows = vec!["(1, 'a', $1)"; 5_000].join(", ");
        assert!(bound(&format!("INSERT INTO t (a, b, c) VALUES {rows}")) < 20);
        let whens = "WHEN a = 1 THEN 'x' ".repeat(2_000);
        assert!(bound(&format!("SELECT CASE {whens} ELSE 'y' END FROM t")) < 20);
        let arms = " UNION SELECT 1, 2, 3".repeat(300);
        assert!(
            bound(&format!("SELECT 1{arms}")) >= 300,
            "set operations cross lists"
        );
    }

    /// The bound is PostgreSQL's scanner's: what sqlparser would read as one string or
    /// comment but PostgreSQL reads as operators still counts.
    #[test]
    fn what_the_server_reads_as_operators_counts() {
        let chain = "+1".repeat(2_000);
        // A backslash ends nothing in a standard string; a `/*` inside a line comment opens no
        // comment; `$x$` after a name is part of it, not a dollar quote.
        for sql in [
            format!("SELECT '\\' , 1{chain} --'"),
            format!("SELECT 1 -- /*\n{chain} */"),
            format!("SELECT a$x$, 1{chain} -- $x$"),
            // Keywords after `.` are names, not the CASE's separators or its end.
            format!(
                "SELECT CASE WHEN true THEN 0 ELSE 0{} END",
                " + x.then".repeat(2_000)
            ),
            format!(
                "SELECT CASE WHEN true THEN 0{} END",
                " + x.else + x.when".repeat(1_000)
            ),
            format!(
                "SELECT CASE WHEN true THEN 0 ELSE 0{} END",
                " + x.end + x.case".repeat(1_000)
            ),
        ] {
            assert!(bound(&sql) >= 2_000, "{sql:.60}");
            assert_eq!(parse(&sql).err(), Some(Unparsed::TooDeep), "{sql:.60}");
        }
    }

    /// On a tokio worker's stack, text built to nest deeply is parsed or refused, never
    /// overflows (which would abort the process).
    #[test]
    fn deep_text_is_parsed_or_refused_on_a_worker_stack() {
        let n = 20_000;
        let texts = [
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
            format!("SELECT 1{}", "+1".repeat(n)),
            format!("SELECT 1{}", "+1".repeat(MAX_NESTING - 10)),
            format!("SELECT {}1{}", "(SELECT ".repeat(n / 8), ")".repeat(n / 8)),
            format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n)),
            format!("SELECT 1 WHERE {}true", "NOT ".repeat(n)),
            format!("SELECT 1 WHERE {}", vec!["a = 1"; n].join(" AND ")),
            // A left-deep chain of set operations across its arms' lists (the lists'
            // commas started a new segment and hid the chain: bound 3, overflowed inline).
            format!("SELECT 1{}", " UNION SELECT 1, 1".repeat(n / 4)),
            format!("SELECT 1{}", " EXCEPT SELECT 1 ORDER BY 1, 2".repeat(n / 4)),
        ];
        for sql in texts {
            let outcome = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || parse(&sql).map(|_| ()))
                .unwrap()
                .join()
                .expect("the reading overflowed the stack");
            assert!(
                matches!(outcome, Ok(()) | Err(Unparsed::TooDeep)),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn rejected_text_is_told_apart() {
        assert_eq!(parse("SELEC 1").err(), Some(Unparsed::Rejected));
        assert_eq!(parse("SELECT 'open").err(), Some(Unparsed::Rejected));
        assert!(parse("SELECT 1; SELECT 2").is_ok());
    }
}
