//! Where each supplied value of a compared protected column sits in its comparison, so that
//! while several key versions are live it can be matched under all of them (`c = v` becomes
//! `c = ANY(<v under each version>)`). Only asked when more than one version is live.
//!
//! The analysis says which columns a statement compares with supplied values, and where each
//! value is, but not which comparison holds it; this reads the text once more (sqlparser, as
//! the analysis does) and finds, for every value, the innermost comparison operand that holds
//! it. A value in a comparison shape it cannot rewrite is refused, never matched under one
//! version only: a row still under the old key would silently not be found.

use std::ops::{ControlFlow, Range};

use sqlparser::ast::{visit_expressions, BinaryOperator, Expr, Spanned as _};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Tokenizer};

use super::FEATURE_NOT_SUPPORTED;
use crate::analyze::PARSER_RECURSION_LIMIT;
use crate::protect::every_version::Splice;
use crate::protocol::error::PgError;

/// What a supplied value of a compared column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteRole {
    /// Written (INSERT, UPDATE SET, bulk shapes): sealed with the active version only.
    Written,
    /// Compared: spliced under every live version as said.
    Compared(Splice),
}

/// A comparison operand and what a value there needs.
#[derive(Debug, Clone)]
struct Slot {
    range: Range<usize>,
    role: Result<Splice, &'static str>,
}

/// The role of each site (byte ranges of supplied values; an empty range is a value the
/// analysis inserted itself, the `true` of a boolean column used as a condition).
pub fn roles(sql: &str, sites: &[Range<usize>]) -> Result<Vec<SiteRole>, PgError> {
    let slots = slots(sql)?;
    sites
        .iter()
        .map(|site| {
            if site.is_empty() {
                return Ok(SiteRole::Compared(Splice::AnyOf));
            }
            let innermost = slots
                .iter()
                .filter(|s| {
                    s.range.start < site.end && site.start < s.range.end.max(s.range.start + 1)
                })
                .min_by_key(|s| s.range.len());
            match innermost {
                None => Ok(SiteRole::Written),
                Some(Slot { role: Ok(how), .. }) => Ok(SiteRole::Compared(*how)),
                Some(Slot {
                    role: Err(shape), ..
                }) => Err(refusal(shape)),
            }
        })
        .collect()
}

fn refusal(shape: &str) -> PgError {
    PgError::error(
        FEATURE_NOT_SUPPORTED,
        format!(
            "while several key versions are live (a key rotation), pgshroud cannot match a protected value {shape} under every version"
        ),
    )
    .with_hint("Write the comparison as column = value, column <> value, column IN (...) or column = ANY(...), with the protected column on the left.")
}

/// Every comparison operand in the text, with what a supplied value there needs.
fn slots(sql: &str) -> Result<Vec<Slot>, PgError> {
    let unreadable = || refusal("in a statement it cannot read again");
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|_| unreadable())?;
    let statements = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|_| unreadable())?;
    let lines = LineStarts::new(sql);
    let mut slots = Vec::new();
    let mut unmapped = false;
    let mut slot = |e: &Expr, role: Result<Splice, &'static str>| {
        let role = match (e, role) {
            // `c = ('x')`: the parentheses would hold a list of values.
            (Expr::Nested(_), Ok(_)) => Err("in parentheses"),
            (_, role) => role,
        };
        let span = e.span();
        match (lines.byte_of(sql, span.start), lines.byte_of(sql, span.end)) {
            (Some(start), Some(end)) => slots.push(Slot {
                range: start..end.max(start),
                role,
            }),
            _ => unmapped = true,
        }
    };
    let _ = visit_expressions(&statements, |e| {
        match e {
            Expr::BinaryOp { left, op, right } => {
                let how = match op {
                    BinaryOperator::Eq => Some(Splice::AnyOf),
                    BinaryOperator::NotEq => Some(Splice::AllOf),
                    _ => None,
                };
                if let Some(how) = how {
                    slot(left, Err("on the left of a comparison"));
                    slot(right, Ok(how));
                }
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                slot(a, Err("in IS [NOT] DISTINCT FROM"));
                slot(b, Err("in IS [NOT] DISTINCT FROM"));
            }
            Expr::InList { expr, list, .. } => {
                slot(expr, Err("on the left of IN"));
                for item in list {
                    slot(item, Ok(Splice::Items));
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                let fits = match e {
                    Expr::AnyOp { .. } => *compare_op == BinaryOperator::Eq,
                    _ => *compare_op == BinaryOperator::NotEq,
                };
                slot(left, Err("on the left of ANY or ALL"));
                let mut inner = right.as_ref();
                while let Expr::Nested(e) = inner {
                    inner = e;
                }
                match (fits, inner) {
                    (false, _) => slot(right, Err("in a comparison other than = ANY or <> ALL")),
                    (true, Expr::Array(array)) => {
                        for item in &array.elem {
                            slot(item, Ok(Splice::Items));
                        }
                    }
                    (true, _) => slot(inner, Ok(Splice::Array)),
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if unmapped {
        return Err(unreadable());
    }
    Ok(slots)
}

/// Byte offsets of sqlparser's (line, column) locations; columns count characters.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(sql: &str) -> LineStarts {
        LineStarts(
            std::iter::once(0)
                .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }

    fn byte_of(&self, sql: &str, at: Location) -> Option<usize> {
        let line = usize::try_from(at.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let start = *self.0.get(line)?;
        let rest = sql.get(start..)?;
        let offset = rest
            .char_indices()
            .nth(column)
            .map(|(i, _)| i)
            .or_else(|| (rest.chars().count() == column).then_some(rest.len()))?;
        Some(start + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_of(sql: &str, values: &[&str]) -> Result<Vec<SiteRole>, PgError> {
        let sites: Vec<_> = values
            .iter()
            .map(|v| {
                let at = sql.find(v).expect("value in text");
                at..at + v.len()
            })
            .collect();
        roles(sql, &sites)
    }

    fn compared(how: Splice) -> SiteRole {
        SiteRole::Compared(how)
    }

    #[test]
    fn values_in_comparisons_are_found_with_their_splice() {
        assert_eq!(
            roles_of("SELECT 1 FROM t WHERE email = 'a'", &["'a'"]).unwrap(),
            [compared(Splice::AnyOf)]
        );
        assert_eq!(
            roles_of("DELETE FROM t WHERE email <> $1::text", &["$1::text"]).unwrap(),
            [compared(Splice::AllOf)]
        );
        assert_eq!(
            roles_of(
                "SELECT 1 FROM t WHERE email NOT IN ('a', $2)",
                &["'a'", "$2"]
            )
            .unwrap(),
            [compared(Splice::Items), compared(Splice::Items)]
        );
        assert_eq!(
            roles_of("SELECT 1 FROM t WHERE email = ANY($1)", &["$1"]).unwrap(),
            [compared(Splice::Array)]
        );
        assert_eq!(
            roles_of(
                "SELECT 1 FROM t WHERE email = ANY(ARRAY['a', 'b'])",
                &["'a'", "'b'"]
            )
            .unwrap(),
            [compared(Splice::Items), compared(Splice::Items)]
        );
        assert_eq!(
            roles_of(
                "SELECT 1 FROM t JOIN u ON u.id = t.id AND t.email = 'é'",
                &["'é'"]
            )
            .unwrap(),
            [compared(Splice::AnyOf)]
        );
    }

    #[test]
    fn written_values_stay_written_also_beside_comparisons() {
        assert_eq!(
            roles_of(
                "UPDATE t SET email = 'new' WHERE email = 'old'",
                &["'new'", "'old'"]
            )
            .unwrap(),
            [SiteRole::Written, compared(Splice::AnyOf)]
        );
        assert_eq!(
            roles_of(
                "INSERT INTO t (email) VALUES ('a') ON CONFLICT (email) DO NOTHING",
                &["'a'"]
            )
            .unwrap(),
            [SiteRole::Written]
        );
        // The innermost comparison decides, not one around a subquery.
        assert_eq!(
            roles_of(
                "SELECT 1 FROM u WHERE id = (SELECT id FROM t WHERE email = 'a')",
                &["'a'"]
            )
            .unwrap(),
            [compared(Splice::AnyOf)]
        );
    }

    #[test]
    fn shapes_that_cannot_be_spliced_are_refused() {
        for (sql, value) in [
            ("SELECT 1 FROM t WHERE 'a' = email", "'a'"),
            ("SELECT 1 FROM t WHERE email = ('a')", "'a'"),
            (
                "SELECT 1 FROM t WHERE email IS NOT DISTINCT FROM 'a'",
                "'a'",
            ),
            ("SELECT 1 FROM t WHERE email <> ANY($1)", "$1"),
        ] {
            let err = roles_of(sql, &[value]).unwrap_err();
            assert_eq!(err.code, FEATURE_NOT_SUPPORTED, "{sql}");
            assert!(err.message.contains("several key versions"), "{sql}");
        }
    }

    #[test]
    fn an_inserted_boolean_condition_is_an_equality() {
        // The empty range just after `flag`, where the analysis splices ` = true)`.
        let after_flag = std::iter::once(27..27).collect::<Vec<_>>();
        assert_eq!(
            roles("SELECT 1 FROM t WHERE flag", &after_flag).unwrap(),
            [compared(Splice::AnyOf)]
        );
    }
}
