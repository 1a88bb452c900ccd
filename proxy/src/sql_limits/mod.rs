//! Resource limits of reading SQL: a bound on how deeply a statement nests, computed from its
//! tokens before anything recursive runs, and a stack big enough for reading a deep one.
//!
//! Why from tokens: sqlparser builds left-associative operator chains (`a || b || ...`,
//! `x AND y AND ...`, `UNION` chains) in a loop, so its own recursion limit does not stop a
//! tree ten thousand levels deep; walking, visiting or merely dropping such a tree recurses
//! once per level and would overflow the stack, which aborts the whole process. PostgreSQL's
//! grammar (libpg_query) does the same: its parser is a loop, but turning the tree it builds
//! into pgshroud's (C output, then decoding) recurses once per level, and `1+1+...+1` twenty
//! thousand terms long overflows a tokio worker's stack there. Each reader's tree is bounded
//! from its own scanner's tokens: sqlparser's here ([`nesting_bound`]), PostgreSQL's in
//! [`pg`] (every call of PostgreSQL's grammar goes through [`pg::parse`]).

pub mod pg;

use std::cell::Cell;

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

/// Statements whose nesting bound exceeds this are refused with 54001 before they are parsed.
/// About this many chained operators (or a fraction as many nested groups) in one expression;
/// PostgreSQL's own limit (max_stack_depth) is higher, but no application writes such SQL.
/// PostgreSQL's reading (`pg_reading.rs`) costs about 20 KiB of stack per level in debug
/// builds (prost decoding pg_query's tree recurses through a 268-variant node type) and time
/// that grows faster than the depth (about 0.15 s at 1,000 in debug builds): hence 1,000.
pub const MAX_NESTING: usize = 1_000;

/// sqlparser's own recursion limit (nested parentheses, subqueries, CASE, arrays).
pub const PARSER_RECURSION_LIMIT: usize = 50;

/// Statements up to this bound are read on the caller's stack (a tokio worker's 2 MiB,
/// of which such a statement needs under 1 MiB in debug builds, PostgreSQL's reading
/// included); deeper ones on a thread of their own whose stack grows with the bound.
pub const INLINE_NESTING: usize = 16;

/// A parenthesised group costs the walkers about as much stack as this many chained
/// operators (subquery -> query -> select -> item -> expression ...).
const GROUP_WEIGHT: usize = 4;

/// Stack per unit of the bound (measured at about 6 KiB per chained operator in debug builds
/// for sqlparser's analysis, and about 20 KiB more for PostgreSQL's reading).
const STACK_PER_UNIT: usize = 64 * 1024;
const BASE_STACK: usize = 8 << 20;

/// An upper bound (up to a constant factor) on the depth of the syntax tree sqlparser builds
/// from `tokens`, parsed or not (see [`bound_of`]).
pub fn nesting_bound(tokens: &[TokenWithSpan]) -> usize {
    bound_of(tokens.iter().map(|t| class_of(&t.token)))
}

/// What a token is to the nesting bound, whichever scanner read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Whitespace and comments.
    Skip,
    /// Identifiers, literals and parameters: never an operator, so never a level of their own.
    Leaf,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Case,
    End,
    /// `,` and `;`: a new sibling subtree.
    Separator,
    /// `WHEN`, `THEN`, `ELSE`: a new sibling subtree inside `CASE ... END`.
    CaseSeparator,
    /// `UNION`, `INTERSECT`, `EXCEPT`: a level of a left-deep chain of set operations, which
    /// runs across the separators of its arms' lists (`SELECT 1, 1 UNION SELECT 1, 1 ...`).
    SetOperation,
    /// `.`: what follows is a name, whatever word it is (PostgreSQL's grammar takes any
    /// keyword as an attribute name, `x.then`, and its scanner still calls it `THEN`).
    Dot,
    /// Everything else counts as a possible level.
    Other,
}

/// Every chain of operators is counted within its group (between parentheses, brackets, or
/// `CASE ... END`), groups add up along their nesting, and list separators (`,`, `;`,
/// `WHEN`/`THEN`/`ELSE` inside `CASE`) start a new sibling subtree.
fn bound_of(classes: impl Iterator<Item = Class>) -> usize {
    let mut stack = vec![Group::new(GroupKind::Top)];
    let mut after_dot = false;
    for class in classes {
        // A keyword after `.` is a name: it must not open, close or split a group (`CASE
        // WHEN true THEN 0 ELSE 0 + x.then + x.then ...` kept the bound at 8 while PostgreSQL
        // read a chain 20,000 deep). Counted as an operator: the bound may only over-count.
        let class = match class {
            Class::Skip => class,
            _ if std::mem::replace(&mut after_dot, class == Class::Dot) => Class::Other,
            _ => class,
        };
        let top = stack.last().map_or(GroupKind::Top, |g| g.kind);
        match (class, top) {
            (Class::Skip | Class::Leaf, _) => {}
            (Class::OpenParen, _) => stack.push(Group::new(GroupKind::Paren)),
            (Class::OpenBracket, _) => stack.push(Group::new(GroupKind::Bracket)),
            (Class::Case, _) => stack.push(Group::new(GroupKind::Case)),
            (Class::CloseParen, GroupKind::Paren)
            | (Class::CloseBracket, GroupKind::Bracket)
            | (Class::End, GroupKind::Case) => close(&mut stack),
            (Class::Separator, _) | (Class::CaseSeparator, GroupKind::Case) => {
                current(&mut stack).next_segment()
            }
            (Class::SetOperation, _) => {
                let group = current(&mut stack);
                group.chain = group.chain.saturating_add(1);
            }
            _ => current(&mut stack).ops += 1,
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map_or(0, |g| g.depth())
}

/// A sqlparser token's class.
fn class_of(token: &Token) -> Class {
    match token {
        Token::Whitespace(_) => Class::Skip,
        Token::LParen => Class::OpenParen,
        Token::RParen => Class::CloseParen,
        Token::LBracket => Class::OpenBracket,
        Token::RBracket => Class::CloseBracket,
        Token::Comma | Token::SemiColon => Class::Separator,
        Token::Period => Class::Dot,
        Token::Word(w) if is_keyword(w, Keyword::CASE) => Class::Case,
        Token::Word(w) if is_keyword(w, Keyword::END) => Class::End,
        Token::Word(w)
            if [
                Keyword::UNION,
                Keyword::INTERSECT,
                Keyword::EXCEPT,
                Keyword::MINUS,
            ]
            .into_iter()
            .any(|k| is_keyword(w, k)) =>
        {
            Class::SetOperation
        }
        Token::Word(w)
            if [Keyword::WHEN, Keyword::THEN, Keyword::ELSE]
                .into_iter()
                .any(|k| is_keyword(w, k)) =>
        {
            Class::CaseSeparator
        }
        token if is_leaf(token) => Class::Leaf,
        _ => Class::Other,
    }
}

/// Runs `analysis` with a stack big enough for a statement of nesting `bound`: inline for the
/// common shallow statement (or on a thread this function started for a bound at least as
/// deep: the analysis reads the text with PostgreSQL's grammar too, and each unit of stack
/// is sized for both), on a scoped thread otherwise. `None` if no thread could be started.
pub fn with_stack_for<T: Send>(bound: usize, analysis: impl FnOnce() -> T + Send) -> Option<T> {
    if bound <= INLINE_NESTING || bound <= SIZED_FOR.with(Cell::get) {
        return Some(analysis());
    }
    let stack = BASE_STACK + bound.saturating_mul(STACK_PER_UNIT);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pgshroud-analyse".into())
            .stack_size(stack)
            .spawn_scoped(scope, move || {
                SIZED_FOR.with(|sized| sized.set(bound));
                analysis()
            })
            .ok()?
            .join()
            .ok()
    })
}

thread_local! {
    /// The bound the current thread's stack was sized for by [`with_stack_for`] (0: a thread
    /// it did not start).
    static SIZED_FOR: Cell<usize> = const { Cell::new(0) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKind {
    Top,
    Paren,
    Bracket,
    Case,
}

/// One open group: the operators counted in its current segment, the deepest child group of
/// that segment, the deepest finished segment, and the set operations chained in the group
/// across its segments (each arm may be as deep as the deepest segment).
struct Group {
    kind: GroupKind,
    ops: usize,
    child: usize,
    best: usize,
    chain: usize,
}

impl Group {
    fn new(kind: GroupKind) -> Self {
        Group {
            kind,
            ops: 0,
            child: 0,
            best: 0,
            chain: 0,
        }
    }

    fn next_segment(&mut self) {
        self.best = self.best.max(self.ops.saturating_add(self.child));
        self.ops = 0;
        self.child = 0;
    }

    fn depth(mut self) -> usize {
        self.next_segment();
        self.best.saturating_add(self.chain)
    }
}

fn current(stack: &mut [Group]) -> &mut Group {
    // The top-level group is never popped, so the stack is never empty here.
    let last = stack.len() - 1;
    &mut stack[last]
}

/// Ends the innermost group and charges its depth to the enclosing segment. The group also
/// counts as one operator there: groups side by side (`x[1][2]...`, `f(a)(b)`) may chain.
fn close(stack: &mut Vec<Group>) {
    if stack.len() < 2 {
        return;
    }
    if let Some(group) = stack.pop() {
        let depth = group.depth().saturating_add(GROUP_WEIGHT);
        let parent = current(stack);
        parent.child = parent.child.max(depth);
        parent.ops = parent.ops.saturating_add(1);
    }
}

fn is_keyword(w: &sqlparser::tokenizer::Word, keyword: Keyword) -> bool {
    w.quote_style.is_none() && w.keyword == keyword
}

/// Identifiers, literals and parameters: never an operator, so never a level of their own.
fn is_leaf(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.quote_style.is_some() || w.keyword == Keyword::NoKeyword,
        Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::Placeholder(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn bound(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        nesting_bound(&tokens)
    }

    #[test]
    fn a_reading_inside_a_sized_thread_runs_there_when_its_bound_fits() {
        let id = || std::thread::current().id();
        let (outer, fits, deeper) = with_stack_for(100, || {
            let fits = with_stack_for(100, id).unwrap();
            let deeper = with_stack_for(101, id).unwrap();
            (id(), fits, deeper)
        })
        .unwrap();
        assert_ne!(outer, id());
        assert_eq!(fits, outer);
        assert_ne!(deeper, outer);
    }

    #[test]
    fn keywords_after_a_dot_are_names() {
        let then = format!(
            "SELECT CASE WHEN true THEN 0 ELSE 0{} END",
            " + x.then".repeat(2_000)
        );
        assert!(bound(&then) >= 2_000);
        let union = format!("SELECT 1{}", ", x.union".repeat(2_000));
        assert!(bound(&union) < 20, "a list of names stays shallow");
    }

    #[test]
    fn operator_chains_count_each_operator() {
        let sql = format!("SELECT 'a'{}", " || 'b'".repeat(100));
        assert!(bound(&sql) >= 100);
        let sql = format!("SELECT 1 WHERE {}", vec!["x = 1"; 100].join(" AND "));
        assert!(bound(&sql) >= 199);
    }

    #[test]
    fn lists_take_the_deepest_item_not_the_sum() {
        let rows = vec!["(1, 'a', $1)"; 5_000].join(", ");
        assert!(bound(&format!("INSERT INTO t (a, b, c) VALUES {rows}")) < 20);
        let list = vec!["'x'"; 5_000].join(", ");
        assert!(bound(&format!("SELECT 1 FROM t WHERE a IN ({list})")) < 20);
    }

    /// A set operation's arms are not siblings: the chain is left-deep across their lists.
    #[test]
    fn set_operations_chain_across_the_lists_of_their_arms() {
        let arms = " UNION SELECT 1, 2 INTERSECT SELECT a, b FROM t".repeat(300);
        assert!(bound(&format!("SELECT 1, 2{arms}")) >= 600);
        let arms = " EXCEPT SELECT (1 + 1), 2".repeat(300);
        assert!(bound(&format!("SELECT 1, 2{arms}")) >= 300);
    }

    #[test]
    fn case_branches_are_siblings() {
        let whens = "WHEN a = 1 THEN 'x' ".repeat(2_000);
        assert!(bound(&format!("SELECT CASE {whens} ELSE 'y' END FROM t")) < 20);
    }

    #[test]
    fn nested_groups_add_up_along_their_nesting() {
        let n = 100;
        let sql = format!("SELECT {}1{}", "(1 + ".repeat(n), ")".repeat(n));
        assert!(bound(&sql) >= n * GROUP_WEIGHT);
        let sql = format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n));
        assert!(bound(&sql) >= n * GROUP_WEIGHT);
    }

    #[test]
    fn unbalanced_text_still_counts_every_operator() {
        let sql = format!("SELECT 1{} ) ) ]", " || 1".repeat(300));
        assert!(bound(&sql) >= 300);
        let sql = format!("SELECT (((1{}", " || 1".repeat(300));
        assert!(bound(&sql) >= 300);
        let sql = format!("END; SELECT 1{}", " || 1".repeat(300));
        assert!(bound(&sql) >= 300);
    }
}
