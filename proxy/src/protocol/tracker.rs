//! What the server holds under each prepared-statement and portal name, as the proxy must
//! believe it. A Parse, Bind or Close changes the server only if the server gets to it: after
//! an error it skips every message up to Sync. So each message's effect is recorded as
//! pending when it is sent and applied to the confirmed state only when the server confirms
//! it (ParseComplete, BindComplete, CloseComplete), or dropped when the server skipped it.
//! Look-ups for a message being sent see the confirmed state with every pending effect on
//! top: the state the server will have if everything before it succeeds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A prepared statement the server holds.
#[derive(Debug)]
pub enum Held<S> {
    /// Prepared through the proxy (Parse): the proxy knows what it is.
    Known(Arc<S>),
    /// Prepared by SQL (`PREPARE name AS ...`): the proxy does not know what it is.
    Foreign,
}

impl<S> Clone for Held<S> {
    fn clone(&self) -> Self {
        match self {
            Held::Known(s) => Held::Known(s.clone()),
            Held::Foreign => Held::Foreign,
        }
    }
}

/// One message's effect on the server's names.
#[derive(Debug)]
pub enum Effect<S, P> {
    /// Parse (or SQL `PREPARE`): a statement under this name.
    Prepare(String, Held<S>),
    /// Close of a statement, or SQL `DEALLOCATE name`.
    CloseStatement(String),
    /// Bind: a portal under this name.
    Bind(String, Arc<P>),
    /// Close of a portal, or SQL `CLOSE name` (which closes protocol portals too).
    ClosePortal(String),
    /// SQL `DECLARE name CURSOR`: a portal the proxy did not bind, whose results carry only
    /// the column origins PostgreSQL reports. `hold`: `WITH HOLD`, it outlives its transaction.
    DeclareCursor { name: String, hold: bool },
    /// SQL `CLOSE ALL`: every portal.
    CloseAllPortals,
    /// A simple query runs in the unnamed statement and portal: both are gone after it.
    SimpleQuery,
    /// SQL `DEALLOCATE ALL`.
    DeallocateAll,
    /// SQL `DISCARD ALL`: every statement and portal.
    DiscardAll,
}

/// Identifies a pending effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug)]
pub struct Tracker<S, P> {
    statements: HashMap<String, Held<S>>,
    portals: HashMap<String, Arc<P>>,
    /// Cursors declared in SQL, by name, and whether each is `WITH HOLD`.
    cursors: HashMap<String, bool>,
    /// Effects of messages sent and not yet confirmed or skipped, in wire order.
    pending: VecDeque<(Ticket, Effect<S, P>)>,
    next: u64,
}

impl<S, P> Default for Tracker<S, P> {
    fn default() -> Self {
        Tracker {
            statements: HashMap::new(),
            portals: HashMap::new(),
            cursors: HashMap::new(),
            pending: VecDeque::new(),
            next: 0,
        }
    }
}

/// What a look-up found, counting pending effects.
enum Found<'a, T> {
    Is(&'a T),
    Gone,
    NotMentioned,
}

impl<S, P> Tracker<S, P> {
    /// Records the effect of a message now sent to the server.
    pub fn sent(&mut self, effect: Effect<S, P>) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        self.pending.push_back((ticket, effect));
        ticket
    }

    /// The server confirmed the message: its effect is now the server's state.
    pub fn confirm(&mut self, ticket: Ticket) {
        if let Some(effect) = self.take(ticket) {
            self.apply(effect);
        }
    }

    /// The server skipped (or failed) the message: it changed nothing.
    pub fn skipped(&mut self, ticket: Ticket) {
        self.take(ticket);
    }

    fn take(&mut self, ticket: Ticket) -> Option<Effect<S, P>> {
        let at = self.pending.iter().position(|(t, _)| *t == ticket)?;
        self.pending.remove(at).map(|(_, e)| e)
    }

    /// An effect the server has certainly had (an SQL `DEALLOCATE` that completed).
    pub fn apply(&mut self, effect: Effect<S, P>) {
        match effect {
            Effect::Prepare(name, held) => {
                self.statements.insert(name, held);
            }
            Effect::CloseStatement(name) => {
                self.statements.remove(&name);
            }
            Effect::Bind(name, portal) => {
                self.portals.insert(name, portal);
            }
            Effect::ClosePortal(name) => {
                self.portals.remove(&name);
                self.cursors.remove(&name);
            }
            Effect::DeclareCursor { name, hold } => {
                self.cursors.insert(name, hold);
            }
            Effect::CloseAllPortals => {
                self.portals.clear();
                self.cursors.clear();
            }
            Effect::SimpleQuery => {
                self.statements.remove("");
                self.portals.remove("");
            }
            Effect::DeallocateAll => self.statements.clear(),
            Effect::DiscardAll => {
                self.statements.clear();
                self.portals.clear();
                self.cursors.clear();
            }
        }
    }

    /// The transaction ended (ReadyForQuery with status `I`): its portals are gone, but for
    /// cursors declared `WITH HOLD`. (Those of a transaction that rolled back are gone too;
    /// believing one still there only lets the server answer that it does not exist.)
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
        self.cursors.retain(|_, hold| *hold);
    }

    /// The statement a message sent now would find under `name`.
    pub fn statement(&self, name: &str) -> Option<&Held<S>> {
        match self.pending_statement(name) {
            Found::Is(held) => Some(held),
            Found::Gone => None,
            Found::NotMentioned => self.statements.get(name),
        }
    }

    fn pending_statement(&self, name: &str) -> Found<'_, Held<S>> {
        for (_, effect) in self.pending.iter().rev() {
            match effect {
                Effect::Prepare(n, held) if n == name => return Found::Is(held),
                Effect::CloseStatement(n) if n == name => return Found::Gone,
                Effect::SimpleQuery if name.is_empty() => return Found::Gone,
                Effect::DeallocateAll | Effect::DiscardAll => return Found::Gone,
                _ => {}
            }
        }
        Found::NotMentioned
    }

    /// The portal a message sent now would find under `name`.
    pub fn portal(&self, name: &str) -> Option<&Arc<P>> {
        for (_, effect) in self.pending.iter().rev() {
            match effect {
                Effect::Bind(n, portal) if n == name => return Some(portal),
                Effect::ClosePortal(n) if n == name => return None,
                Effect::SimpleQuery if name.is_empty() => return None,
                Effect::DiscardAll | Effect::CloseAllPortals => return None,
                _ => {}
            }
        }
        self.portals.get(name)
    }

    /// Whether a message sent now would find a cursor declared in SQL under `name`.
    pub fn cursor(&self, name: &str) -> bool {
        for (_, effect) in self.pending.iter().rev() {
            match effect {
                Effect::DeclareCursor { name: n, .. } if n == name => return true,
                Effect::ClosePortal(n) if n == name => return false,
                Effect::CloseAllPortals | Effect::DiscardAll => return false,
                _ => {}
            }
        }
        self.cursors.contains_key(name)
    }

    /// Whether the server may hold a statement under `name` although a message sent now
    /// would not find one: a Close (or DEALLOCATE) of it is still unconfirmed and may yet be
    /// skipped.
    pub fn statement_in_doubt(&self, name: &str) -> bool {
        self.statement(name).is_none()
            && (self.statements.contains_key(name)
                || self.pending.iter().any(|(_, e)| match e {
                    Effect::Prepare(n, _) => n == name,
                    _ => false,
                }))
    }

    /// The statement the server holds under `name` now (for its answers, which follow
    /// every earlier message's).
    pub fn confirmed_statement(&self, name: &str) -> Option<&Held<S>> {
        self.statements.get(name)
    }

    pub fn confirmed_portal(&self, name: &str) -> Option<&Arc<P>> {
        self.portals.get(name)
    }

    /// Replaces a known statement's record everywhere it appears (a statement re-checked
    /// after a rules reload); the server's statement itself is unchanged.
    pub fn refresh(&mut self, old: &Arc<S>, new: Arc<S>) {
        let same = |held: &Held<S>| matches!(held, Held::Known(s) if Arc::ptr_eq(s, old));
        for held in self.statements.values_mut() {
            if same(held) {
                *held = Held::Known(new.clone());
            }
        }
        for (_, effect) in self.pending.iter_mut() {
            if let Effect::Prepare(_, held) = effect {
                if same(held) {
                    *held = Held::Known(new.clone());
                }
            }
        }
    }

    /// Statements and portals held, for diagnostics.
    pub fn counts(&self) -> (usize, usize) {
        (self.statements.len(), self.portals.len())
    }
}

/// What a statement of SQL text does to prepared-statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlEffect {
    /// `PREPARE name AS ...`
    Prepare(String),
    /// `DEALLOCATE [PREPARE] name`
    Deallocate(String),
    /// `DEALLOCATE [PREPARE] ALL`
    DeallocateAll,
    /// `DISCARD ALL`
    DiscardAll,
    /// `DECLARE name ... CURSOR [WITH HOLD] FOR ...`
    Declare { name: String, hold: bool },
    /// `CLOSE name`
    Close(String),
    /// `CLOSE ALL`
    CloseAll,
}

impl SqlEffect {
    /// The command tag the server answers the statement with.
    pub fn tag(&self) -> &'static str {
        match self {
            SqlEffect::Prepare(_) => "PREPARE",
            SqlEffect::Deallocate(_) => "DEALLOCATE",
            SqlEffect::DeallocateAll => "DEALLOCATE ALL",
            SqlEffect::DiscardAll => "DISCARD ALL",
            SqlEffect::Declare { .. } => "DECLARE CURSOR",
            SqlEffect::Close(_) => "CLOSE CURSOR",
            SqlEffect::CloseAll => "CLOSE CURSOR ALL",
        }
    }

    pub fn effect<S, P>(&self) -> Effect<S, P> {
        match self {
            SqlEffect::Prepare(name) => Effect::Prepare(name.clone(), Held::Foreign),
            SqlEffect::Deallocate(name) => Effect::CloseStatement(name.clone()),
            SqlEffect::DeallocateAll => Effect::DeallocateAll,
            SqlEffect::DiscardAll => Effect::DiscardAll,
            SqlEffect::Declare { name, hold } => Effect::DeclareCursor {
                name: name.clone(),
                hold: *hold,
            },
            SqlEffect::Close(name) => Effect::ClosePortal(name.clone()),
            SqlEffect::CloseAll => Effect::CloseAllPortals,
        }
    }

    /// Whether `tag` answers a statement whose effect [`sql_effects`] records.
    pub fn is_tracked_tag(tag: &str) -> bool {
        matches!(
            tag,
            "PREPARE"
                | "DEALLOCATE"
                | "DEALLOCATE ALL"
                | "DISCARD ALL"
                | "DECLARE CURSOR"
                | "CLOSE CURSOR"
                | "CLOSE CURSOR ALL"
        )
    }

    /// What to assume when the server answered `tag` for a statement this module did not
    /// recognise: forgetting every statement (or portal) is safe (a Bind or Describe of one
    /// is then refused). A cursor declared unrecognised stays unknown, so refused.
    pub fn unrecognised<S, P>(tag: &str) -> Option<Effect<S, P>> {
        match tag {
            "DEALLOCATE" | "DEALLOCATE ALL" => Some(Effect::DeallocateAll),
            "DISCARD ALL" => Some(Effect::DiscardAll),
            "CLOSE CURSOR" | "CLOSE CURSOR ALL" => Some(Effect::CloseAllPortals),
            _ => None,
        }
    }
}

/// The `PREPARE`, `DEALLOCATE`, `DISCARD ALL`, `DECLARE` and `CLOSE` statements of a text, in
/// order. Cheap for every other text: the tokenizer runs only when one of the words occurs.
pub fn sql_effects(sql: &str) -> Vec<SqlEffect> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};

    let lower = sql.to_ascii_lowercase();
    if !["prepare", "deallocate", "discard", "declare", "close"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return Vec::new();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Vec::new();
    };
    let name = |t: &Token| match t {
        Token::Word(w) if w.quote_style == Some('"') => Some(w.value.clone()),
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        _ => None,
    };
    let mut effects = Vec::new();
    for statement in tokens.split(|t| matches!(t, Token::SemiColon)) {
        let words: Vec<&Token> = statement
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let upper: Vec<String> = words
            .iter()
            .map(|t| match t {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                _ => String::new(),
            })
            .collect();
        let word = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
        let effect = match word(0) {
            "PREPARE" if word(1) != "TRANSACTION" => {
                words.get(1).and_then(|t| name(t)).map(SqlEffect::Prepare)
            }
            "DEALLOCATE" => {
                let at = if word(1) == "PREPARE" { 2 } else { 1 };
                match word(at) {
                    "ALL" => Some(SqlEffect::DeallocateAll),
                    _ => words
                        .get(at)
                        .and_then(|t| name(t))
                        .map(SqlEffect::Deallocate),
                }
            }
            "DISCARD" if word(1) == "ALL" => Some(SqlEffect::DiscardAll),
            "DECLARE" => words.get(1).and_then(|t| name(t)).map(|name| {
                // Options come before FOR, the query after it.
                let options = upper.iter().take_while(|w| *w != "FOR");
                let hold = options
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "WITH" && w[1] == "HOLD");
                SqlEffect::Declare { name, hold }
            }),
            "CLOSE" if word(1) == "ALL" => Some(SqlEffect::CloseAll),
            "CLOSE" => words.get(1).and_then(|t| name(t)).map(SqlEffect::Close),
            _ => None,
        };
        effects.extend(effect);
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_that_names_statements_is_recognised() {
        assert!(sql_effects("select 1; insert into t values (2)").is_empty());
        assert_eq!(
            sql_effects("DEALLOCATE s1; deallocate prepare \"S2\"; DEALLOCATE ALL"),
            vec![
                SqlEffect::Deallocate("s1".into()),
                SqlEffect::Deallocate("S2".into()),
                SqlEffect::DeallocateAll
            ]
        );
        assert_eq!(
            sql_effects("PREPARE Ins (text) AS INSERT INTO t VALUES ($1); discard all"),
            vec![SqlEffect::Prepare("ins".into()), SqlEffect::DiscardAll]
        );
        assert!(sql_effects("PREPARE TRANSACTION 'x'; DISCARD PLANS").is_empty());
        assert!(sql_effects("select 'deallocate s1'").is_empty());
    }

    #[test]
    fn sql_that_declares_and_closes_cursors_is_recognised() {
        assert_eq!(
            sql_effects(
                "DECLARE \"Big\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1; \
                 declare c cursor without hold for select 'with hold'; CLOSE \"Big\"; close all"
            ),
            vec![
                SqlEffect::Declare {
                    name: "Big".into(),
                    hold: true
                },
                SqlEffect::Declare {
                    name: "c".into(),
                    hold: false
                },
                SqlEffect::Close("Big".into()),
                SqlEffect::CloseAll,
            ]
        );
        assert!(sql_effects("select 'declare c cursor for select 1', closed FROM t").is_empty());
    }

    #[test]
    fn cursors_end_with_their_transaction_unless_held_or_closed() {
        let mut t = T::default();
        for (name, hold) in [("c", false), ("h", true), ("gone", true)] {
            let d = t.sent(Effect::DeclareCursor {
                name: name.into(),
                hold,
            });
            assert!(t.cursor(name));
            t.confirm(d);
        }
        let close = t.sent(Effect::ClosePortal("gone".into()));
        assert!(!t.cursor("gone"));
        t.confirm(close);
        t.transaction_ended();
        assert!(!t.cursor("c"));
        assert!(t.cursor("h"));
        let all = t.sent(Effect::CloseAllPortals);
        assert!(!t.cursor("h"));
        t.skipped(all);
        assert!(t.cursor("h"));
        t.apply(Effect::DiscardAll);
        assert!(!t.cursor("h"));
    }

    type T = Tracker<&'static str, &'static str>;

    fn known(t: &T, name: &str) -> Option<&'static str> {
        match t.statement(name)? {
            Held::Known(s) => Some(**s),
            Held::Foreign => Some("foreign"),
        }
    }

    fn prepare(name: &str, what: &'static str) -> Effect<&'static str, &'static str> {
        Effect::Prepare(name.into(), Held::Known(Arc::new(what)))
    }

    #[test]
    fn a_parse_counts_for_later_messages_and_holds_once_confirmed() {
        let mut t = T::default();
        let parse = t.sent(prepare("s1", "insert"));
        assert_eq!(known(&t, "s1"), Some("insert"));
        assert!(t.confirmed_statement("s1").is_none());
        t.confirm(parse);
        assert!(t.confirmed_statement("s1").is_some());
        assert_eq!(known(&t, "s1"), Some("insert"));
    }

    #[test]
    fn a_skipped_close_leaves_the_statement() {
        let mut t = T::default();
        let parse = t.sent(prepare("s1", "insert"));
        t.confirm(parse);
        let close = t.sent(Effect::CloseStatement("s1".into()));
        assert_eq!(known(&t, "s1"), None);
        assert!(t.statement_in_doubt("s1"));
        // An earlier error made the server skip the Close.
        t.skipped(close);
        assert_eq!(known(&t, "s1"), Some("insert"));
        assert!(!t.statement_in_doubt("s1"));
    }

    #[test]
    fn a_skipped_parse_changes_nothing() {
        let mut t = T::default();
        let first = t.sent(prepare("s1", "select"));
        t.confirm(first);
        let second = t.sent(prepare("s1", "insert"));
        assert_eq!(known(&t, "s1"), Some("insert"));
        t.skipped(second);
        assert_eq!(known(&t, "s1"), Some("select"));
    }

    #[test]
    fn a_simple_query_ends_the_unnamed_statement_and_portal() {
        let mut t = T::default();
        let p = t.sent(prepare("", "select"));
        let b = t.sent(Effect::Bind("".into(), Arc::new("portal")));
        let named = t.sent(prepare("keep", "select"));
        t.confirm(p);
        t.confirm(b);
        t.confirm(named);
        let q = t.sent(Effect::SimpleQuery);
        assert_eq!(known(&t, ""), None);
        assert!(t.portal("").is_none());
        t.confirm(q);
        assert_eq!(known(&t, ""), None);
        assert!(t.confirmed_portal("").is_none());
        assert_eq!(known(&t, "keep"), Some("select"));
    }

    #[test]
    fn portals_end_with_the_transaction() {
        let mut t = T::default();
        let b = t.sent(Effect::Bind("p".into(), Arc::new("portal")));
        t.confirm(b);
        let later = t.sent(Effect::Bind("q".into(), Arc::new("later")));
        t.transaction_ended();
        assert!(t.portal("p").is_none());
        // A Bind sent after the transaction's end is not affected.
        assert!(t.portal("q").is_some());
        t.confirm(later);
        assert!(t.confirmed_portal("q").is_some());
    }

    #[test]
    fn deallocate_and_discard_drop_statements() {
        let mut t = T::default();
        for name in ["a", "b"] {
            let p = t.sent(prepare(name, "select"));
            t.confirm(p);
        }
        t.apply(Effect::CloseStatement("a".into()));
        assert_eq!(known(&t, "a"), None);
        assert_eq!(known(&t, "b"), Some("select"));
        let all = t.sent(Effect::DeallocateAll);
        assert_eq!(known(&t, "b"), None);
        assert!(t.statement_in_doubt("b"));
        t.confirm(all);
        assert!(!t.statement_in_doubt("b"));
        let b = t.sent(Effect::Bind("p".into(), Arc::new("portal")));
        t.confirm(b);
        t.apply(Effect::DiscardAll);
        assert!(t.portal("p").is_none());
    }

    #[test]
    fn sql_prepare_is_foreign() {
        let mut t = T::default();
        t.apply(Effect::Prepare("x".into(), Held::Foreign));
        assert_eq!(known(&t, "x"), Some("foreign"));
    }

    #[test]
    fn refresh_replaces_the_record_everywhere() {
        let mut t = T::default();
        let old = Arc::new("old");
        let p = t.sent(Effect::Prepare("s".into(), Held::Known(old.clone())));
        t.confirm(p);
        t.refresh(&old, Arc::new("new"));
        assert_eq!(known(&t, "s"), Some("new"));
    }
}
