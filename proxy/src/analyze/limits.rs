//! Resource limits of analysis: a bound on how deeply a statement nests, computed from its
//! tokens before anything recursive runs, and a stack big enough for the analysis of a deep one.
//!
//! Why from tokens: sqlparser builds left-associative operator chains (`a || b || ...`,
//! `x AND y AND ...`, `UNION` chains) in a loop, so its own recursion limit does not stop a
//! tree ten thousand levels deep; walking, visiting or merely dropping such a tree recurses
//! once per level and would overflow the stack, which aborts the whole process.

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

/// Statements up to this bound are analysed on the caller's stack (a tokio worker's 2 MiB,
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
/// from `tokens`, parsed or not: every chain of operators is counted within its group (between
/// parentheses, brackets, or `CASE ... END`), groups add up along their nesting, and list
/// separators (`,`, `;`, `WHEN`/`THEN`/`ELSE` inside `CASE`) start a new sibling subtree.
/// Identifiers and literals are leaves; every other token counts as a possible level.
pub fn nesting_bound(tokens: &[TokenWithSpan]) -> usize {
    let mut stack = vec![Group::new(GroupKind::Top)];
    for t in tokens {
        let top = stack.last().map_or(GroupKind::Top, |g| g.kind);
        match (&t.token, top) {
            (Token::Whitespace(_), _) => {}
            (Token::LParen, _) => stack.push(Group::new(GroupKind::Paren)),
            (Token::LBracket, _) => stack.push(Group::new(GroupKind::Bracket)),
            (Token::Word(w), _) if is_keyword(w, Keyword::CASE) => {
                stack.push(Group::new(GroupKind::Case))
            }
            (Token::RParen, GroupKind::Paren)
            | (Token::RBracket, GroupKind::Bracket)
            | (Token::Word(_), GroupKind::Case)
                if closes(&t.token, top) =>
            {
                close(&mut stack)
            }
            (Token::Comma | Token::SemiColon, _) => current(&mut stack).next_segment(),
            (Token::Word(w), GroupKind::Case)
                if [Keyword::WHEN, Keyword::THEN, Keyword::ELSE]
                    .into_iter()
                    .any(|k| is_keyword(w, k)) =>
            {
                current(&mut stack).next_segment()
            }
            (token, _) if is_leaf(token) => {}
            _ => current(&mut stack).ops += 1,
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map_or(0, |g| g.depth())
}

/// Runs `analysis` with a stack big enough for a statement of nesting `bound`: inline for the
/// common shallow statement, on a scoped thread otherwise. `None` if no thread could be started.
pub fn with_stack_for<T: Send>(bound: usize, analysis: impl FnOnce() -> T + Send) -> Option<T> {
    if bound <= INLINE_NESTING {
        return Some(analysis());
    }
    let stack = BASE_STACK + bound.saturating_mul(STACK_PER_UNIT);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pgshroud-analyse".into())
            .stack_size(stack)
            .spawn_scoped(scope, analysis)
            .ok()?
            .join()
            .ok()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKind {
    Top,
    Paren,
    Bracket,
    Case,
}

/// One open group: the operators counted in its current segment, the deepest child group of
/// that segment, and the deepest finished segment.
struct Group {
    kind: GroupKind,
    ops: usize,
    child: usize,
    best: usize,
}

impl Group {
    fn new(kind: GroupKind) -> Self {
        Group {
            kind,
            ops: 0,
            child: 0,
            best: 0,
        }
    }

    fn next_segment(&mut self) {
        self.best = self.best.max(self.ops.saturating_add(self.child));
        self.ops = 0;
        self.child = 0;
    }

    fn depth(mut self) -> usize {
        self.next_segment();
        self.best
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

fn closes(token: &Token, kind: GroupKind) -> bool {
    match (token, kind) {
        (Token::RParen, GroupKind::Paren) | (Token::RBracket, GroupKind::Bracket) => true,
        (Token::Word(w), GroupKind::Case) => is_keyword(w, Keyword::END),
        _ => false,
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
