//! What the server holds under each prepared-statement and portal name, as the proxy must
//! believe it. A Parse, Bind or Close changes the server only if the server gets to it: after
//! an error it skips every message up to Sync. So each message's effect is recorded as
//! pending when it is sent and applied to the confirmed state only when the server confirms
//! it (ParseComplete, BindComplete, CloseComplete), or dropped when the server skipped it.
//! Look-ups for a message being sent see the confirmed state with every pending effect on
//! top: the state the server will have if everything before it succeeds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::text_settings::TextMode;

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

/// A map by statement or portal name whose unnamed entry (`""`, what most drivers use for
/// every statement, and every portal) sits in its own slot: the commonest look-up costs no
/// hashing of the name.
#[derive(Debug)]
struct ByName<V> {
    unnamed: Option<V>,
    named: HashMap<String, V>,
}

impl<V> Default for ByName<V> {
    fn default() -> Self {
        ByName {
            unnamed: None,
            named: HashMap::new(),
        }
    }
}

impl<V> ByName<V> {
    fn get(&self, name: &str) -> Option<&V> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn insert(&mut self, name: String, value: V) {
        if name.is_empty() {
            self.unnamed = Some(value);
        } else {
            self.named.insert(name, value);
        }
    }

    fn remove(&mut self, name: &str) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    fn clear(&mut self) {
        self.unnamed = None;
        if !self.named.is_empty() {
            self.named.clear();
        }
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.unnamed.iter_mut().chain(self.named.values_mut())
    }

    fn len(&self) -> usize {
        usize::from(self.unnamed.is_some()) + self.named.len()
    }
}

#[derive(Debug)]
pub struct Tracker<S, P> {
    statements: ByName<Held<S>>,
    portals: ByName<Arc<P>>,
    /// Cursors declared in SQL, by name, and whether each is `WITH HOLD`.
    cursors: HashMap<String, bool>,
    /// Effects of messages sent and not yet confirmed or skipped, in wire order.
    pending: VecDeque<(Ticket, Effect<S, P>)>,
    next: u64,
}

impl<S, P> Default for Tracker<S, P> {
    fn default() -> Self {
        Tracker {
            statements: ByName::default(),
            portals: ByName::default(),
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
        if !self.cursors.is_empty() {
            self.cursors.retain(|_, hold| *hold);
        }
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
        !self.cursors.is_empty() && self.cursors.contains_key(name)
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

/// [`sql_effects`] for a text sent under `mode`. libpg_query reads as the server does only
/// with standard_conforming_strings on and in UTF8: with backslash escapes, a text holding a
/// backslash may split differently (`'a\'; DEALLOCATE x; --'` is one string there), and in
/// another client_encoding a name with non-ASCII bytes is converted before the server reads
/// it. Such texts get no effects: the server's command tags then make the tracker forget
/// every name the statement may have touched, which is safe.
pub fn sql_effects_in(sql: &str, mode: TextMode) -> Vec<SqlEffect> {
    if reads_as_server(sql, mode) {
        sql_effects(sql)
    } else {
        Vec::new()
    }
}

/// Whether libpg_query reads `sql`, sent under `mode`, as the server does (see
/// [`sql_effects_in`]).
pub fn reads_as_server(sql: &str, mode: TextMode) -> bool {
    match mode {
        TextMode::Standard => true,
        TextMode::BackslashEscapes => !sql.contains('\\'),
        TextMode::OtherEncoding => sql.is_ascii(),
    }
}

/// The `PREPARE`, `DEALLOCATE`, `DISCARD ALL`, `DECLARE` and `CLOSE` statements of a text, in
/// order, as PostgreSQL's grammar reads them (libpg_query): names arrive decoded and
/// truncated as the server stores them (`U&"..."` escapes, `""` in quoted names, unquoted
/// names folded, 63 bytes at most), and only top-level statements count, never words in
/// strings, comments or dollar quotes. Cheap for every other text: the parser runs only when
/// one of the words occurs. A text the grammar rejects runs nothing on the server, so it has
/// no effects.
pub fn sql_effects(sql: &str) -> Vec<SqlEffect> {
    use pg_query::protobuf::DiscardMode;
    use pg_query::NodeEnum;

    /// `CURSOR_OPT_HOLD` in PostgreSQL's parsenodes.h.
    const CURSOR_OPT_HOLD: i32 = 0x0020;

    // Checked in one pass without allocating: this runs for every statement text.
    if !has_effect_word(sql.as_bytes()) {
        return Vec::new();
    }
    // Unread (rejected, or too deep to read safely): no effects, as for a text read otherwise
    // by the server (see `sql_effects_in`).
    let Ok(parsed) = crate::sql_limits::pg::parse(sql) else {
        return Vec::new();
    };
    let nodes = parsed.protobuf.stmts.iter();
    nodes
        .filter_map(|raw| match raw.stmt.as_ref()?.node.as_ref()? {
            NodeEnum::PrepareStmt(s) => Some(SqlEffect::Prepare(s.name.clone())),
            NodeEnum::DeallocateStmt(s) if s.isall || s.name.is_empty() => {
                Some(SqlEffect::DeallocateAll)
            }
            NodeEnum::DeallocateStmt(s) => Some(SqlEffect::Deallocate(s.name.clone())),
            NodeEnum::DiscardStmt(s) if s.target == DiscardMode::DiscardAll as i32 => {
                Some(SqlEffect::DiscardAll)
            }
            NodeEnum::DeclareCursorStmt(s) => Some(SqlEffect::Declare {
                name: s.portalname.clone(),
                hold: s.options & CURSOR_OPT_HOLD != 0,
            }),
            // PostgreSQL's grammar leaves the name NULL for `CLOSE ALL`.
            NodeEnum::ClosePortalStmt(s) if s.portalname.is_empty() => Some(SqlEffect::CloseAll),
            NodeEnum::ClosePortalStmt(s) => Some(SqlEffect::Close(s.portalname.clone())),
            _ => None,
        })
        .collect()
}

/// Whether `prepare`, `deallocate`, `discard`, `declare` or `close` occurs anywhere in the
/// text, in any case (a substring test: words in strings and comments count too, and only
/// send the text to the parser). One pass: each word can start only at `p`, `d` or `c`.
pub fn has_effect_word(bytes: &[u8]) -> bool {
    const WORDS: [&[u8]; 5] = [b"prepare", b"deallocate", b"discard", b"declare", b"close"];
    bytes.iter().enumerate().any(|(i, &b)| {
        matches!(b | 0x20, b'p' | b'd' | b'c')
            && WORDS.iter().any(|w| {
                bytes
                    .get(i..i + w.len())
                    .is_some_and(|at| at.eq_ignore_ascii_case(w))
            })
    })
}

#[cfg(test)]
#[path = "tests/tracker.rs"]
mod tests;
