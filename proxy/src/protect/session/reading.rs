//! A Parse's text read for everything the session must know of it before it goes upstream
//! (the full path), and the pre-filter's memory of texts found harmless (`harmless`), which
//! lets the next Parse of the same bytes skip those readings.

use std::sync::Arc;

use super::schema_change::catalog_dependent_words;
use super::{harmless, ProtectedSession, Text};
use crate::analyze::gates;
use crate::analyze::identity_settings::IdentityTouch;
use crate::protect::engine::{Layout, Plan, PlanAction};
use crate::protect::wire::Parse;
use crate::protocol::text_settings::TextMode;
use crate::protocol::tracker;
use crate::protocol::verdict::Verdict;

/// What a Parse's text was read to be (see `ProtectedSession::read_parse`).
pub(super) struct Reading {
    pub identity: IdentityTouch,
    pub unsettling: bool,
    pub plan: Option<Arc<Plan>>,
    pub query: Option<String>,
    pub effects: Vec<tracker::SqlEffect>,
    pub fetches: bool,
}

impl ProtectedSession {
    /// What the pre-filter's memory of harmless texts is valid under now.
    pub(super) fn harmless_under(&self) -> harmless::Under {
        harmless::Under {
            generation: self.generation,
            plans_epoch: self.plans_epoch,
            mode: self.settings.mode(),
        }
    }

    /// Every reading of a Parse's text: its identity settings, the settings pgshroud follows,
    /// the pre-filter and (for a text naming a protected table) the plan, whose rewrite
    /// replaces `parse`'s text and types; its effects on names; whether it may FETCH. A text
    /// found harmless on all counts is remembered. `Err`: the verdict that refuses it.
    pub(super) fn read_parse(&mut self, parse: &mut Parse) -> Result<Reading, Verdict> {
        // A tenant switch starts at its Bind; everything else touching pgshroud.* is refused.
        let identity = self
            .identity_at_parse(&parse.query)
            .map_err(|error| self.refuse_extended(&error))?;
        self.parse_may_undo_schema_changes(&parse.query);
        let unsettling = self.follow_settings(&parse.query);
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        let (plan, query) = match self.read_statement_text(&parse.query) {
            Ok((Text::Opaque, _)) => {
                if let Err(error) = self.check_catalog_dependent_unread(&parse.query) {
                    return Err(self.refuse_extended(&error));
                }
                (None, None)
            }
            Ok((Text::Readable(sql), false)) => {
                if let Err(error) = self.check_kinds(sql) {
                    return Err(self.refuse_extended(&error));
                }
                (None, Some(sql.to_owned()))
            }
            Ok((Text::Readable(sql), true)) => {
                let plan = self.plan(sql);
                if let Err(error) = self.check_plan(sql, &plan) {
                    return Err(self.refuse_extended(&error));
                }
                (Some(plan), Some(sql.to_owned()))
            }
            Err(error) => return Err(self.refuse_extended(&error)),
        };
        if let Some(plan) = &plan {
            if plan.refreshes_catalog {
                self.schema_changes();
            }
            // Protected parameters take the server's own type (bytea); the client is told
            // the logical type in ParameterDescription.
            for (i, param) in plan.params.iter().enumerate() {
                if param.is_some() {
                    if let Some(t) = parse.param_types.get_mut(i) {
                        *t = 0;
                    }
                }
            }
            if let PlanAction::Rewrite(sql) = &plan.action {
                parse.query = sql.clone().into_bytes();
            }
        }
        if let Some(Err(error)) = query
            .as_deref()
            .map(|sql| self.check_catalog_dependent(sql))
        {
            return Err(self.refuse_extended(&error));
        }
        let mode = self.settings.mode();
        let effects = query
            .as_deref()
            .map(|sql| tracker::sql_effects_in(sql, mode))
            .unwrap_or_default();
        let fetches = may_fetch(&parse.query, query.as_deref(), mode);
        if let Some(sql) = query.as_deref() {
            let harmless = plan.is_none()
                && identity == IdentityTouch::None
                && !unsettling
                && effects.is_empty()
                && !fetches
                && !catalog_dependent_words(sql);
            if harmless {
                let under = self.harmless_under();
                self.harmless.remember(under, sql);
            }
        }
        Ok(Reading {
            identity,
            unsettling,
            plan,
            query,
            effects,
            fetches,
        })
    }
}

/// Whether none of the statement path's cheap gates fires on `text` (a whole text, or a
/// literal token of one): the word gates (`analyze::gates`), the pre-filter's names, the
/// tracker's effect words and `fetch`. For the memory of harmless shapes (`harmless.rs`).
pub(super) fn gates_silent(layout: &Layout, text: &str) -> bool {
    !gates::any_gate(text)
        && !layout.mentions_protected(text)
        && !tracker::has_effect_word(text.as_bytes())
        && !catalog_dependent_words(text)
        && !text
            .as_bytes()
            .windows(5)
            .any(|w| w.eq_ignore_ascii_case(b"fetch"))
}

/// [`gates_silent`] of a literal token of a text a remembered shape matched. A number
/// (digits, with a point) holds no word of the fixed gates (`analyze::gates` tests it), so
/// only the pre-filter's table names, which may be quoted digits, are looked for in one.
pub(super) fn literal_silent(layout: &Layout, literal: &str) -> bool {
    if literal.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return !layout.mentions_protected(literal);
    }
    gates_silent(layout, literal)
}

/// Whether a statement text may be a FETCH, whose rows take the cursor's shape when it runs
/// (so each Execute is described first). Only texts holding the word are read, once per Parse,
/// with PostgreSQL's grammar, so a column named `fetched_at` costs no Describe per Execute. A
/// text it cannot read as the server does (`raw` not UTF-8, backslash escapes, another
/// client_encoding) or does not parse counts as a FETCH: a false positive costs only a
/// Describe.
pub(super) fn may_fetch(raw: &[u8], readable: Option<&str>, mode: TextMode) -> bool {
    if !raw.windows(5).any(|w| w.eq_ignore_ascii_case(b"fetch")) {
        return false;
    }
    let Some(sql) = readable.filter(|sql| tracker::reads_as_server(sql, mode)) else {
        return true;
    };
    match crate::sql_limits::pg::parse(sql) {
        Ok(parsed) => parsed.protobuf.stmts.iter().any(|raw| {
            matches!(
                raw.stmt.as_ref().and_then(|s| s.node.as_ref()),
                Some(pg_query::NodeEnum::FetchStmt(_))
            )
        }),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::tracker::Held;

    #[test]
    fn the_client_s_declared_types_are_kept_though_the_server_gets_bytea() {
        let mut s = catalog_session("app");
        let mut body = b"ins\0insert into customers (email) values ($1)\0".to_vec();
        body.extend_from_slice(&[0, 1, 0, 0, 0, 25]);
        let sent = messages(&replaced(s.client_message(&message(b'P', &body))));
        // Upstream: the type left to the server (bytea), as `0`.
        assert!(sent[0].1.ends_with(&[0, 1, 0, 0, 0, 0]), "{:?}", sent[0]);
        match s.names.statement("ins") {
            Some(Held::Known(info)) => assert_eq!(info.declared, vec![25]),
            other => panic!("{other:?}"),
        }
    }
}
