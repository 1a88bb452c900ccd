//! Bind, client to server: the statement it names as the server will hold it (checked again
//! after a rules reload), and its protected parameters sealed into envelopes.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use super::{Described, Expect, PortalInfo, PreparedInfo, ProtectedSession};
use crate::ops::metrics::{CryptoOp, ProtectedValueAction};
use crate::protect::engine::{ParamSpec, Plan, PlanAction};
use crate::protect::wire::{Bind, Format};
use crate::protect::{codec, every_version};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::text_settings::TextMode;
use crate::protocol::tracker::{Effect, Held};
use crate::protocol::verdict::Verdict;

impl ProtectedSession {
    /// A prepared statement planned under rules that have since been reloaded is checked again
    /// before it runs: the caller's (maybe new) role must allow it, and the server's copy (its
    /// text and parameter types) must still be right, else the client must prepare it again.
    fn revalidate(
        &mut self,
        name: &str,
        info: Arc<PreparedInfo>,
    ) -> Result<Arc<PreparedInfo>, PgError> {
        if self.planned_now(&info) {
            return Ok(info);
        }
        let new_plan = match &info.query {
            Some(query) => {
                let plan = self
                    .layout
                    .mentions_protected(query)
                    .then(|| self.plan(query));
                match &plan {
                    Some(plan) => self.check_plan(query, plan)?,
                    None => self.check_kinds(query)?,
                }
                plan
            }
            None => None,
        };
        if !same_server_statement(info.plan.as_deref(), new_plan.as_deref()) {
            return Err(PgError::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "prepared statement \"{name}\" was prepared before pgshroud's rules changed what it touches: prepare it again"
                ),
            ));
        }
        let described = OnceLock::new();
        if let Some(old) = info.described.get() {
            let rows = self.row_plan(&old.fields, new_plan.as_deref().map(|p| (p, 0)));
            let _ = described.set(Described {
                fields: old.fields.clone(),
                rows,
            });
        }
        let tenant = new_plan
            .as_ref()
            .and_then(|_| self.plans_tenant().map(Arc::from));
        let fresh = Arc::new(PreparedInfo {
            plan: new_plan,
            tenant,
            declared: info.declared.clone(),
            query: info.query.clone(),
            generation: self.plans_epoch,
            described,
            effects: info.effects.clone(),
            unsettling: info.unsettling,
            rolls_back: info.rolls_back,
            executes: info.executes,
            fetches: info.fetches,
            identity: info.identity.clone(),
        });
        self.names.refresh(&info, fresh.clone());
        Ok(fresh)
    }

    /// The statement a Bind names, as the server will hold it when the Bind arrives.
    fn bound_statement(&mut self, bind: &Bind) -> Result<Arc<PreparedInfo>, PgError> {
        let info = match self.names.statement(&bind.statement) {
            Some(Held::Known(info)) => info.clone(),
            Some(Held::Foreign) => {
                return Err(PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "prepared statement \"{}\" was not prepared with the protocol's Parse (SQL PREPARE, or a statement pgshroud refused): pgshroud binds only statements it has read",
                        bind.statement
                    ),
                ))
            }
            None if bind.statement.is_empty() => {
                return Err(PgError::error(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    "unnamed prepared statement does not exist",
                ))
            }
            None => {
                return Err(PgError::error(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    format!("prepared statement \"{}\" does not exist", bind.statement),
                ))
            }
        };
        if !bind.portal.is_empty() && self.names.portal(&bind.portal).is_some() {
            return Err(PgError::error(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{}\" already exists", bind.portal),
            ));
        }
        self.revalidate(&bind.statement, info)
    }

    pub(super) fn bind(&mut self, frame: &[u8]) -> Verdict {
        // Nothing to seal: recorded and forwarded without a copy (see `plain_bind`).
        if let Some(verdict) = self.bind_plain(frame) {
            return verdict;
        }
        let bind = match Bind::read(frame) {
            Ok(b) => b,
            Err(e) => return self.unreadable(e),
        };
        self.follow_rules();
        if std::mem::take(&mut self.catalog_stale) {
            self.refresh_at_sync = true;
        }
        // A statement planned before what the session serves changed: parsed again from its
        // text right before this Bind, rather than refused.
        let prepared_again = match self.reparse(&bind.statement) {
            Some(Verdict::Replace(bytes)) => bytes,
            Some(other) => return other,
            None => return self.bind_statement(bind),
        };
        // Whatever the Bind becomes, the Parse sent again goes first (its answers are owed).
        match self.bind_statement(bind) {
            Verdict::Forward => {
                let mut out = prepared_again;
                out.extend_from_slice(frame);
                Verdict::Replace(out)
            }
            Verdict::Replace(bytes) => {
                let mut out = prepared_again;
                out.extend_from_slice(&bytes);
                Verdict::Replace(out)
            }
            other => other,
        }
    }

    /// The Bind, once the statement it names is the one the session serves.
    fn bind_statement(&mut self, mut bind: Bind) -> Verdict {
        let info = match self.bound_statement(&bind) {
            Ok(info) => info,
            Err(error) => return self.refuse_extended(&error),
        };
        if let Err(error) = self.check_identity_bind(&info, &bind) {
            return self.refuse_extended(&error);
        }
        if let Err(error) = self.check_bound_execute(&info) {
            return self.refuse_extended(&error);
        }
        if info.plan.as_ref().is_some_and(|p| p.refreshes_catalog)
            || self.bound_may_undo_schema_changes(&info)
        {
            // A schema change prepared earlier runs now (or a rollback that may undo the
            // transaction's): look the catalog up after it.
            self.schema_changes();
        }
        let params: Vec<(usize, ParamSpec, u32)> = info
            .params()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let declared = info.declared.get(i).copied().unwrap_or(0);
                s.clone().map(|s| (i, s, declared))
            })
            .collect();
        let portal = Arc::new(PortalInfo {
            statement: info,
            result_formats: bind.result_formats.clone(),
            described: OnceLock::new(),
        });
        if params.is_empty() {
            let ticket = self.names.sent(Effect::Bind(bind.portal.clone(), portal));
            self.pending.push_back(Expect::BindComplete {
                ours: false,
                ticket,
            });
            return Verdict::Forward;
        }
        if self.settings.mode() == TextMode::OtherEncoding {
            // Text values in another encoding would be encrypted as bytes the analyser's
            // UTF-8 reading never sees.
            if let Err(error) = self.settings.check_analysable() {
                return self.refuse_extended(&error);
            }
        }
        bind.expand_param_formats();
        let mut encrypted = 0;
        for (i, param, declared) in params {
            let format = bind.param_format(i);
            let Some(slot) = bind.params.get_mut(i) else {
                continue;
            };
            if let Some(value) = slot.as_ref() {
                let cipher = match self.ciphers.sealing(&param.spec) {
                    Ok(cipher) => cipher,
                    Err(error) => return self.refuse_extended(&error),
                };
                let sealed = if param.every_version {
                    every_version::bind_value(
                        &param.spec,
                        cipher,
                        format,
                        declared,
                        value,
                        param.array,
                    )
                } else if param.array {
                    codec::seal_array(&param.spec, cipher, format, value)
                } else {
                    codec::seal_declared(&param.spec, cipher, format, declared, value)
                };
                match sealed {
                    Ok(sealed) => {
                        *slot = Some(sealed);
                        encrypted += 1;
                    }
                    Err(error) => return self.refuse_extended(&error),
                }
            }
            if let Some(f) = bind.param_formats.get_mut(i) {
                *f = Format::Binary.code();
            }
        }
        self.count_values(
            CryptoOp::Encrypt,
            ProtectedValueAction::Encrypted,
            encrypted,
        );
        let ticket = self.names.sent(Effect::Bind(bind.portal.clone(), portal));
        self.pending.push_back(Expect::BindComplete {
            ours: false,
            ticket,
        });
        Verdict::Replace(bind.write())
    }

    /// The prepared statement `statement` parsed again from the text the client prepared,
    /// when it was planned under what the session no longer serves (a reload, a migrating
    /// column's swap between a driver's prepare and its bind): its messages (`Replace`, a
    /// named one closed first), or the verdict that ends or refuses it. `None`: nothing to do.
    fn reparse(&mut self, statement: &str) -> Option<Verdict> {
        let Some(Held::Known(info)) = self.names.statement(statement) else {
            return None;
        };
        if self.planned_now(info) {
            return None;
        }
        let query = info.query.clone()?;
        let parse = crate::protect::wire::Parse {
            name: statement.to_owned(),
            query: query.into_bytes(),
            param_types: info.declared.clone(),
        };
        let frame = parse.write();
        let mut out = BytesMut::new();
        if !statement.is_empty() {
            // PostgreSQL refuses a Parse of a name in use: ours closes it first.
            let mut body = vec![b'S'];
            body.extend_from_slice(statement.as_bytes());
            body.push(0);
            out.extend_from_slice(&crate::protocol::frame::message(b'C', &body));
            let ticket = self
                .names
                .sent(Effect::CloseStatement(statement.to_owned()));
            self.pending
                .push_back(Expect::CloseComplete { ours: true, ticket });
        }
        let verdict = self.parse(&frame);
        // The client did not send this Parse: its ParseComplete is ours to drop.
        for expect in self.pending.iter_mut().rev() {
            if let Expect::ParseComplete { ours, .. } = expect {
                *ours = true;
                break;
            }
        }
        Some(match verdict {
            Verdict::Forward => {
                out.extend_from_slice(&frame);
                Verdict::Replace(out)
            }
            Verdict::Replace(bytes) => {
                out.extend_from_slice(&bytes);
                Verdict::Replace(out)
            }
            other => other,
        })
    }
}

/// Whether a statement planned as `old` is, as the server holds it, also right under `new`:
/// the same text sent and the same protected parameters.
fn same_server_statement(old: Option<&Plan>, new: Option<&Plan>) -> bool {
    let text = |p: &Plan| match &p.action {
        PlanAction::Rewrite(sql) => Some(sql.clone()),
        _ => None,
    };
    let params = |p: &Plan| {
        p.params
            .iter()
            .map(|s| {
                s.as_ref()
                    .map(|s| (s.spec.qualified.clone(), s.array, s.every_version))
            })
            .collect::<Vec<_>>()
    };
    match (old, new) {
        (None, None) => true,
        (Some(old), Some(new)) => text(old) == text(new) && params(old) == params(new),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_bind_of_an_unknown_or_sql_prepared_statement_is_refused() {
        let mut s = test_session("app");
        let v = s.client_message(&bind("", "nope"));
        assert_eq!(refusal_code(&v).as_deref(), Some("26000"));
        answer(&mut s, &["1", "2"]);
        s.server_message(&error("26000"));
        s.client_message(&sync());
        answer(&mut s, &["ZI"]);
        s.client_message(&message(b'Q', b"PREPARE x AS SELECT $1::text\0"));
        answer(&mut s, &["CPREPARE\0", "ZI"]);
        let v = s.client_message(&bind("", "x"));
        assert_eq!(refusal_code(&v).as_deref(), Some("0A000"));
    }

    #[test]
    fn a_bind_of_a_protected_parameter_is_sealed_into_an_envelope() {
        let mut s = catalog_session("app");
        s.client_message(&parse("ins", "insert into customers (email) values ($1)"));
        let sent = replaced(s.client_message(&bind_params("", "ins", &["alice@example.com"])));
        let bind = Bind::read(&sent).expect("a Bind");
        // Envelopes go in binary: the server's parameter is bytea.
        assert_eq!(bind.param_formats, [Format::Binary.code()]);
        let envelope = bind.params[0].clone().expect("not NULL");
        assert!(!envelope.windows(5).any(|w| w == b"alice"));
        // Deterministic under the column's key, so equality still finds it.
        let stored = stored_email(&mut s, "alice@example.com");
        assert_eq!(format!("\\x{}", hex::encode(envelope)), stored);
    }

    #[test]
    fn a_bind_of_unprotected_parameters_is_forwarded_untouched() {
        let mut s = catalog_session("app");
        s.client_message(&parse("ins", "insert into customers (name) values ($1)"));
        let bind = bind_params("", "ins", &["Alice"]);
        assert_eq!(s.client_message(&bind), Verdict::Forward);
    }

    #[test]
    fn a_value_that_is_not_of_the_columns_type_is_refused_with_22p02() {
        let mut s = catalog_session("app");
        s.client_message(&parse("ins", "insert into customers (age) values ($1)"));
        let v = s.client_message(&bind_params("", "ins", &["forty"]));
        assert_eq!(refusal_code(&v).as_deref(), Some("22P02"));
    }
}
