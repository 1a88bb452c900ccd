//! Plans by statement shape: a full plan of one text becomes a template for every text of the
//! same shape (`shape.rs`), so `WHERE email = 'u1@x'` and `'u2@x'` are analysed once.
//!
//! A template keeps no value and no ciphertext: each literal of the text is either a seal site
//! (sealed at instantiation, by the same functions and in the same order as the full path, so
//! a value that does not encode is refused with the same error, and a per-session key could
//! be passed in) or copied from the new text as it is. Every other edit of the full plan (a
//! `$n` typed `bytea`, a cast removed) is fixed text over whole tokens with no literal inside.
//! A template is derived only when all of that can be checked on the full plan; otherwise the
//! shape is marked for the full path.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::compared_sites::SiteRole;
use super::plan::{splice, Origin, Plan, PlanAction, Recipe};
use super::shape::{self, Scanned};
use super::Protection;
use crate::analyze::{StatementInfo, StatementKind};
use crate::protect::codec::Spec;
use crate::protocol::error::PgError;

/// A literal the plan seals: its token, column and role, and its place in the plan.
#[derive(Debug)]
struct SealSite {
    token: usize,
    spec: Spec,
    role: SiteRole,
    /// (statement, literal) in `Plan::statements`.
    site: (usize, usize),
}

/// One edit of the rewritten text, over whole tokens.
#[derive(Debug)]
enum Edit {
    Seal(SealSite),
    Fixed { tokens: Range<usize>, text: String },
}

/// A plan with its values taken out.
#[derive(Debug)]
pub(super) struct Template {
    /// The edits in the order the full path applies them (seals in site order first, which
    /// is the order the full path seals in: the first refusal is the same).
    edits: Vec<Edit>,
    /// Every span in `skeleton.statements`, as (first token, last token + 1) of the source
    /// text, so it can be placed in a new text.
    spans: Vec<Range<usize>>,
    skeleton: Plan,
    /// Approximate heap bytes, for the cache's bound.
    pub bytes: usize,
}

impl Template {
    /// The template of a full plan of `sql`, or `None` when some part of it may depend on a
    /// literal's value.
    pub fn derive(sql: &str, scanned: &Scanned, plan: &Plan, recipe: &Recipe) -> Option<Template> {
        if matches!(plan.action, PlanAction::Refused(_)) || plan.refreshes_catalog {
            return None;
        }
        let plain = |s: &StatementInfo| {
            matches!(
                s.kind,
                StatementKind::Select
                    | StatementKind::Insert
                    | StatementKind::Update
                    | StatementKind::Delete
            ) && s.copy.is_none()
        };
        if !plan.statements.iter().all(plain) {
            return None;
        }
        // Every literal must sit where the parse tree proves its value changes nothing.
        let positions = shape::value_positions(sql)?;
        let starts: HashMap<usize, usize> = scanned
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.start, i))
            .collect();
        let ends: HashMap<usize, usize> = scanned
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.end, i))
            .collect();
        for literal in &scanned.literals {
            if !positions.contains(&scanned.tokens[literal.token].start) {
                return None;
            }
        }
        let tokens_of = |span: &Range<usize>| -> Option<Range<usize>> {
            let first = *starts.get(&span.start)?;
            let last = *ends.get(&span.end)?;
            (first <= last).then_some(first..last + 1)
        };
        let mut seals = Vec::new();
        let mut fixed = Vec::new();
        for (span, origin) in recipe {
            let tokens = tokens_of(span)?;
            match origin {
                Origin::Sealed {
                    spec,
                    role,
                    site,
                    array,
                } => {
                    // Exactly one literal token, whose value is the one the analysis read.
                    let literal = scanned.literals.iter().find(|l| l.token == tokens.start)?;
                    let analysed = plan.statements.get(site.0)?.literals.get(site.1)?;
                    if *array
                        || tokens.len() != 1
                        || analysed.value.as_ref() != Some(&literal.value)
                    {
                        return None;
                    }
                    seals.push(Edit::Seal(SealSite {
                        token: tokens.start,
                        spec: spec.clone(),
                        role: *role,
                        site: *site,
                    }));
                }
                Origin::Fixed(text) => {
                    if tokens.clone().any(|i| scanned.is_literal(i)) {
                        return None;
                    }
                    fixed.push(Edit::Fixed {
                        tokens,
                        text: text.clone(),
                    });
                }
            }
        }
        // The plan's own spans, placed by tokens; literal values are taken out.
        let mut statements = plan.statements.clone();
        let mut spans = Vec::new();
        for s in &mut statements {
            for l in &mut s.literals {
                spans.push(tokens_of(&l.span)?);
                l.value = None;
            }
            for p in &s.params {
                spans.push(tokens_of(&p.span)?);
            }
            for e in &s.edits {
                spans.push(tokens_of(&e.span)?);
            }
        }
        // Every sealed site is one of the plan's literal sites and vice versa.
        let sites: usize = statements.iter().map(|s| s.literals.len()).sum();
        if sites != seals.len() {
            return None;
        }
        seals.sort_by_key(|e| match e {
            Edit::Seal(s) => s.site,
            Edit::Fixed { .. } => (usize::MAX, usize::MAX),
        });
        let mut edits = seals;
        edits.extend(fixed);
        let bytes = sql.len() * 4
            + recipe.len() * 64
            + edits
                .iter()
                .map(|e| match e {
                    Edit::Fixed { text, .. } => text.len(),
                    Edit::Seal(_) => 0,
                })
                .sum::<usize>();
        let skeleton = Plan {
            action: PlanAction::Forward,
            params: plan.params.clone(),
            statements,
            columns: plan.columns.clone(),
            refreshes_catalog: false,
            table_writes: plan.table_writes.clone(),
            links: plan.links.clone(),
            computed: plan.computed.clone(),
        };
        Some(Template {
            edits,
            spans,
            skeleton,
            bytes,
        })
    }

    /// The plan of `sql`, a text of this template's shape, for a session of `tenant` (its
    /// literals of per-tenant columns are sealed with that tenant's key now: the template
    /// holds no ciphertext).
    pub fn instantiate(
        &self,
        protection: &Protection,
        sql: &str,
        scanned: &Scanned,
        tenant: Option<&str>,
    ) -> Plan {
        match self.fill(protection, sql, scanned, tenant) {
            Ok(plan) => plan,
            Err(error) => Plan::refused(error),
        }
    }

    fn fill(
        &self,
        protection: &Protection,
        sql: &str,
        scanned: &Scanned,
        tenant: Option<&str>,
    ) -> Result<Plan, PgError> {
        let value = |token: usize| {
            scanned
                .literals
                .iter()
                .find(|l| l.token == token)
                .map(|l| l.value.as_str())
        };
        let mut edits: Vec<(Range<usize>, String)> = Vec::with_capacity(self.edits.len());
        for edit in &self.edits {
            match edit {
                Edit::Seal(site) => {
                    let value = value(site.token);
                    let sealed = match site.role {
                        SiteRole::Written => {
                            protection.seal_literal(&site.spec, value, false, tenant)?
                        }
                        SiteRole::Compared(how) => protection
                            .seal_literal_every_version(&site.spec, value, false, how, tenant)?,
                    };
                    edits.push((scanned.tokens[site.token].clone(), sealed));
                }
                Edit::Fixed { tokens, text } => {
                    let span = place(scanned, tokens);
                    edits.push((span, text.clone()));
                }
            }
        }
        edits.sort_by_key(|(span, _)| span.start);
        let action = if edits.is_empty() {
            PlanAction::Forward
        } else {
            PlanAction::Rewrite(splice(sql, &edits)?)
        };
        let mut statements = self.skeleton.statements.clone();
        let mut spans = self.spans.iter();
        for s in &mut statements {
            for l in &mut s.literals {
                let tokens = spans.next().cloned().unwrap_or_default();
                l.value = value(tokens.start).map(str::to_owned);
                l.span = place(scanned, &tokens);
            }
            for p in &mut s.params {
                p.span = place(scanned, spans.next().unwrap_or(&(0..0)));
            }
            for e in &mut s.edits {
                e.span = place(scanned, spans.next().unwrap_or(&(0..0)));
            }
        }
        let s = &self.skeleton;
        Ok(Plan {
            action,
            params: s.params.clone(),
            statements,
            columns: s.columns.clone(),
            refreshes_catalog: false,
            table_writes: s.table_writes.clone(),
            links: s.links.clone(),
            computed: s.computed.clone(),
        })
    }
}

/// The byte range of a token range in a text of the same shape.
fn place(scanned: &Scanned, tokens: &Range<usize>) -> Range<usize> {
    match (
        scanned.tokens.get(tokens.start),
        scanned.tokens.get(tokens.end.wrapping_sub(1)),
    ) {
        (Some(first), Some(last)) => first.start..last.end,
        _ => 0..0,
    }
}

/// What the shape cache holds for a shape: a template, or `None` for "use the full path".
pub(super) type Entry = Option<Arc<Template>>;
