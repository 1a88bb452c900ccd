//! ORM text lookups on protected columns, refused by what the ORM meant: Django writes
//! `iexact` as `UPPER("t"."c"::text) = UPPER(%s)` and `contains` / `startswith` / `endswith`
//! (and their `i` forms) as `"t"."c"::text LIKE %s`; "a cast is not supported" would not point
//! at the fix.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
};

use super::refusal;
use super::scope::{fold, Scope};
use super::walk::{strip_nested, Operand, Walker};
use super::{ColumnId, Refusal};

const CASE_INSENSITIVE: &str =
    "case-insensitive comparison (UPPER/LOWER, as Django's iexact lookup writes it)";
const CASE_INSENSITIVE_FIX: &str = "compare the exact value, or store a normalised copy (e.g. \
     lower-cased) in a protected column of its own and compare with that";
const PATTERN: &str =
    "pattern matching (LIKE, as Django's contains, startswith and endswith lookups write it)";
const CASE_INSENSITIVE_PATTERN: &str = "case-insensitive pattern matching (UPPER/LOWER with \
     LIKE, or ILIKE, as Django's icontains, istartswith and iendswith lookups write it)";
const PATTERN_FIX: &str = "compare the exact value with =, or keep the part you search by (e.g. \
     the e-mail domain) in a column of its own";

/// A protected column under an ORM's text wrapping.
struct Wrapped {
    column: ColumnId,
    /// Under UPPER() or LOWER().
    case_folded: bool,
}

impl<'a> Walker<'a> {
    /// The refusal for a condition that is an ORM text lookup on a protected column, if it is
    /// one (`None` leaves the condition to the general rules).
    pub fn orm_text_lookup(&self, e: &Expr, scope: &Scope<'_>) -> Option<Refusal> {
        let (operation, fix, id) = match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq | BinaryOperator::NotEq,
                right,
            } => {
                let w = [left, right]
                    .into_iter()
                    .find_map(|x| self.wrapped(x, scope).filter(|w| w.case_folded))?;
                (CASE_INSENSITIVE, CASE_INSENSITIVE_FIX, w.column)
            }
            Expr::Like { expr, .. } => {
                let w = self.wrapped(expr, scope)?;
                let operation = match w.case_folded {
                    true => CASE_INSENSITIVE_PATTERN,
                    false => PATTERN,
                };
                (operation, PATTERN_FIX, w.column)
            }
            Expr::ILike { expr, .. } => {
                let w = self.wrapped(expr, scope)?;
                (CASE_INSENSITIVE_PATTERN, PATTERN_FIX, w.column)
            }
            _ => return None,
        };
        Some(refusal::not_on_ciphertext(self.schema, id, operation, fix))
    }

    /// `UPPER(c::text)`, `LOWER(c)`, `c::text`: a protected column `c` wrapped the way ORMs
    /// wrap text lookups (a plain `c` is not: its refusals stay as they are).
    fn wrapped(&self, e: &Expr, scope: &Scope<'_>) -> Option<Wrapped> {
        let (inner, case_folded) = match strip_nested(e) {
            Expr::Function(f) => {
                let name = f.name.0.last()?.as_ident().map(fold)?;
                if name != "upper" && name != "lower" {
                    return None;
                }
                let FunctionArguments::List(list) = &f.args else {
                    return None;
                };
                match list.args.as_slice() {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => (x, true),
                    _ => return None,
                }
            }
            other => (other, false),
        };
        let (column, cast) = text_casts(inner);
        if !case_folded && !cast {
            return None;
        }
        match self.column_ref(column, scope).ok()? {
            Operand::Protected(id) => Some(Wrapped {
                column: id,
                case_folded,
            }),
            _ => None,
        }
    }
}

/// The expression under parentheses and casts to text types, and whether there was a cast.
fn text_casts(mut e: &Expr) -> (&Expr, bool) {
    let mut cast = false;
    loop {
        match strip_nested(e) {
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                data_type,
                ..
            } if is_text(data_type) => {
                cast = true;
                e = expr;
            }
            other => return (other, cast),
        }
    }
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::String(_)
    ) || matches!(dt, DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("citext"))
}
