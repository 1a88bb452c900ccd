//! The session's identity settings as the server holds them (`pgshroud.user`, `.role`,
//! `.tenant`, given as startup parameters, so `RESET ALL` and `DISCARD ALL` put them back):
//! refusing every client change but a role's own choice of tenant, and tracking that choice
//! exactly. A tenant switch is accepted only where its outcome is certain: a session-level
//! `SET`/`RESET pgshroud.tenant` sent alone, outside a transaction block, with nothing else
//! outstanding; it takes effect at the ReadyForQuery that ends it without an error, and
//! nothing else may be sent until then. [`ProtectedSession::tenant`] is the one accessor.

use super::{Expect, PreparedInfo, ProtectedSession};
use crate::analyze::identity_settings::{
    ascii_safe_encoding, identity_touch_in, IdentityTouch, Reading, TENANT,
};
use crate::ops::metrics::RefusalReason;
use crate::protect::wire::{Bind, Format};
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::text_settings::TextMode;
use crate::protocol::verdict::Verdict;

/// `invalid_parameter_value`: a tenant id that is not a plain name.
const INVALID_PARAMETER_VALUE: &str = "22023";
/// `active_sql_transaction`: a tenant switch where its outcome would be uncertain.
const ACTIVE_SQL_TRANSACTION: &str = "25001";
/// `text` and `varchar` (pg_type.dat): the parameter types a bound setting name may have.
const TEXT_OID: u32 = 25;
const VARCHAR_OID: u32 = 1043;
/// `set_config(text, text, boolean)` in every PostgreSQL (pg_proc.dat), which a FunctionCall
/// message could run by OID.
pub(super) const SET_CONFIG_OID: u32 = 2078;

/// What the server holds for the session's tenant.
#[derive(Debug, Default)]
pub(super) struct TenantState {
    /// The startup parameter: what `RESET` puts back (the rules' tenant for the caller).
    startup: Option<String>,
    /// What the server holds now.
    current: Option<String>,
    /// A switch sent and not yet settled by its ReadyForQuery.
    in_flight: Option<Switch>,
    /// The last ReadyForQuery said "idle" (no transaction block).
    idle: bool,
    /// `pgshroud.role` was set after login (the rules match on PostgreSQL roles, known only
    /// then): `RESET ALL`/`DISCARD ALL` would put back the role guessed before it, so they
    /// are refused.
    resets_refused: bool,
}

#[derive(Debug)]
struct Switch {
    to: Option<String>,
    failed: bool,
}

impl TenantState {
    pub(super) fn new(startup: Option<String>) -> TenantState {
        TenantState {
            current: startup.clone(),
            startup,
            in_flight: None,
            idle: true,
            resets_refused: false,
        }
    }
}

impl ProtectedSession {
    /// The tenant the server holds for this session now (`pgshroud.tenant`): the rules'
    /// tenant for the caller, or the one a `choose_tenant` role switched to, once the server
    /// confirmed the switch. `None`: no tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.current.as_deref()
    }

    /// The tenant the upstream connection was opened with (its startup parameter), which a
    /// rules reload since the session was made may no longer give.
    pub fn set_startup_tenant(&mut self, tenant: Option<String>) {
        self.ciphers.set_tenant(tenant.as_deref());
        self.tenant = TenantState::new(tenant);
    }

    /// `pgshroud.role` was set after login: refuse what would put the startup value back.
    pub fn refuse_identity_resets(&mut self) {
        self.tenant.resets_refused = true;
    }

    /// The identity-setting check of a Query's text (or of no text: a FunctionCall): refused,
    /// or the tenant it would switch to (`Some(tenant)`), or nothing to do (`None`).
    pub(super) fn check_identity(&self, text: &[u8]) -> Result<Option<Option<String>>, PgError> {
        self.no_switch_in_flight()?;
        match identity_touch_in(text, self.identity_reading(text)) {
            // A simple query binds no parameter (PostgreSQL refuses its `$n`).
            IdentityTouch::BoundNames(_) => Err(self.identity_refused(refused(
                "set_config with a setting name that is not a constant",
            ))),
            touch => self.judge_identity(&touch, text),
        }
    }

    /// The identity-setting check of a Parse: refused, or what its text does to the identity
    /// settings, kept with the prepared statement for its Binds. The server reads the text
    /// once, at Parse, under the settings in force then, and so does the proxy: its Binds are
    /// judged on this reading, not on the text read again.
    pub(super) fn identity_at_parse(&self, text: &[u8]) -> Result<IdentityTouch, PgError> {
        self.no_switch_in_flight()?;
        let touch = identity_touch_in(text, self.identity_reading(text));
        if !matches!(touch, IdentityTouch::BoundNames(_)) {
            self.judge_identity(&touch, text)?;
        }
        Ok(touch)
    }

    /// Nothing may be sent while a tenant switch is unanswered.
    pub(super) fn no_switch_in_flight(&self) -> Result<(), PgError> {
        if self.tenant.in_flight.is_some() {
            return Err(self.identity_refused(PgError::error(
                ACTIVE_SQL_TRANSACTION,
                format!("pgshroud is waiting for the answer to a switch of {TENANT}: wait for it before sending another statement"),
            )));
        }
        Ok(())
    }

    /// The session's verdict on what a text does to the identity settings (its role, its
    /// tenant now): refused, a switch to a tenant, or nothing to do.
    fn judge_identity(
        &self,
        touch: &IdentityTouch,
        text: &[u8],
    ) -> Result<Option<Option<String>>, PgError> {
        match touch.clone() {
            IdentityTouch::None => Ok(None),
            IdentityTouch::BoundNames(_) => Ok(None),
            IdentityTouch::Unreadable => Err(self.identity_refused(PgError::error(
                sqlstate::SYNTAX_ERROR,
                format!("pgshroud could not read this statement with PostgreSQL's grammar (a syntax error, or nesting more than {} levels deep); it was not sent", crate::sql_limits::MAX_NESTING),
            ))),
            IdentityTouch::Refused(what) => {
                // Where the role refuses the text too (server functions running SQL text),
                // its refusal, which names the column, is the one the client gets.
                if let Ok(sql) = std::str::from_utf8(text) {
                    if let Err((why, error)) =
                        self.policy.check_sql_text(sql, &self.layout.schema)
                    {
                        return Err(self.refused_by_role(why, error));
                    }
                }
                Err(self.identity_refused(refused(&what)))
            }
            IdentityTouch::ResetAll if self.tenant.resets_refused => {
                Err(self.identity_refused(refused("RESET ALL / DISCARD ALL, which would put pgshroud.role back to the value of another role, in a session whose role depends on PostgreSQL role membership")))
            }
            IdentityTouch::ResetAll if self.tenant.current == self.tenant.startup => Ok(None),
            IdentityTouch::ResetAll => Ok(Some(self.tenant.startup.clone())),
            IdentityTouch::ChooseTenant(_) if !self.role().choose_tenant => {
                Err(self.identity_refused(refused(&format!(
                    "SET {TENANT} by role {}, which may not choose its tenant (choose_tenant)",
                    self.role().name
                ))))
            }
            IdentityTouch::ChooseTenant(Some(id)) if !pgshroud_rules::is_valid_tenant_id(&id) => {
                Err(self.identity_refused(PgError::error(
                    INVALID_PARAMETER_VALUE,
                    format!("invalid value for parameter \"{TENANT}\": a tenant id is 1 to 63 letters, digits, '_', '-' or '.', starting with a letter or digit"),
                )))
            }
            IdentityTouch::ChooseTenant(id) => {
                Ok(Some(id.or_else(|| self.tenant.startup.clone())))
            }
        }
    }

    /// Whether `text` reads exactly as the server reads it. ASCII without a backslash reads
    /// the same in every client encoding and whatever standard_conforming_strings says.
    fn identity_reading(&self, text: &[u8]) -> Reading {
        if text.is_ascii() && !text.contains(&b'\\') {
            return Reading::Exact;
        }
        let settled = self.unsettled == 0 && !self.pipeline_unsettled;
        let exact = match self.settings.mode() {
            TextMode::Standard => true,
            TextMode::BackslashEscapes => false,
            TextMode::OtherEncoding => {
                self.settings.standard_conforming_strings
                    && ascii_safe_encoding(&self.settings.client_encoding)
            }
        };
        if settled && exact {
            Reading::Exact
        } else {
            Reading::Unsure
        }
    }

    /// Whether a text is refused whatever the session's state (for audit).
    pub(super) fn identity_refuses(&self, sql: &str) -> bool {
        match identity_touch_in(sql.as_bytes(), self.identity_reading(sql.as_bytes())) {
            IdentityTouch::Refused(_) | IdentityTouch::Unreadable => true,
            IdentityTouch::ChooseTenant(_) => !self.role().choose_tenant,
            IdentityTouch::ResetAll => self.tenant.resets_refused,
            // Decided by the Bind's values, which audit reads from the Bind.
            IdentityTouch::None | IdentityTouch::BoundNames(_) => false,
        }
    }

    /// Sends a tenant switch on its way: only where no statement is outstanding, outside a
    /// transaction block (so it commits, or fails, on its own). Parses, Describes and Closes
    /// run nothing, and a Sync after them leaves the session as it was (drivers close
    /// statements they dropped that way, unanswered, before the next request); a Sync after
    /// a `BEGIN` already answered would leave a block open, and the switch's ReadyForQuery
    /// then ends the session (see `identity_ready`).
    pub(super) fn start_switch(&mut self, to: Option<String>) -> Result<(), PgError> {
        let busy = self.pending.iter().any(|e| {
            !matches!(
                e,
                Expect::ParseComplete { .. }
                    | Expect::DescribeStatement { .. }
                    | Expect::CloseComplete { .. }
                    | Expect::Sync { .. }
            )
        });
        if !self.tenant.idle || busy {
            return Err(self.identity_refused(PgError::error(
                ACTIVE_SQL_TRANSACTION,
                format!("pgshroud switches {TENANT} only outside a transaction block, with no other statement outstanding: send it on its own after COMMIT or ROLLBACK"),
            )));
        }
        self.tenant.in_flight = Some(Switch { to, failed: false });
        Ok(())
    }

    /// The check of a Bind of a statement whose Parse read `touch`: nothing may be bound
    /// while a switch is outstanding, setting names bound as parameters are read from the
    /// Bind, and a bound switch starts one. A statement that touches nothing (every statement
    /// of most applications) costs no reading of its text.
    pub(super) fn check_identity_bind(
        &mut self,
        info: &PreparedInfo,
        bind: &Bind,
    ) -> Result<(), PgError> {
        self.no_switch_in_flight()?;
        let text = info.query.as_deref().unwrap_or_default().as_bytes();
        let to = match &info.identity {
            IdentityTouch::None => return Ok(()),
            IdentityTouch::BoundNames(params) => {
                return self.check_bound_names(params, &info.declared, bind)
            }
            touch => self.judge_identity(touch, text)?,
        };
        match to {
            Some(to) => self.start_switch(to),
            None => Ok(()),
        }
    }
    /// The Bind's values of parameters that name the setting a `set_config` call changes
    /// (`SELECT set_config($1, $2, false)`, as psycopg sends it): each must be a text-format
    /// value that names no identity setting. PostgreSQL finds a setting by its name compared
    /// without regard to ASCII case (guc.c's `guc_name_compare`), so any value holding
    /// `pgshroud` in any ASCII case is refused; so is one the proxy cannot read as the server
    /// will (binary format, not UTF-8, not ASCII in another client encoding) or bound to a
    /// parameter declared of a type other than text or varchar (a cast to text could compute
    /// any name). A NULL name sets nothing (set_config raises an error).
    fn check_bound_names(
        &self,
        params: &[usize],
        declared: &[u32],
        bind: &Bind,
    ) -> Result<(), PgError> {
        for &n in params {
            let i = n.saturating_sub(1);
            let named = |why: &str| {
                self.identity_refused(refused(&format!(
                    "set_config with the setting name bound to ${n}: {why}"
                )))
            };
            if !matches!(
                declared.get(i).copied().unwrap_or(0),
                0 | TEXT_OID | VARCHAR_OID
            ) {
                return Err(named("its parameter is declared of a type other than text"));
            }
            let value = match bind.params.get(i) {
                None => return Err(named("no value was bound")),
                Some(None) => continue,
                Some(Some(value)) => value,
            };
            if bind.param_format(i) != Format::Text {
                return Err(named("a binary-format value, which pgshroud does not read"));
            }
            let Ok(name) = std::str::from_utf8(value) else {
                return Err(named("a value that is not UTF-8"));
            };
            if self.settings.mode() == TextMode::OtherEncoding && !name.is_ascii() {
                return Err(named(
                    "a value that is not ASCII in a session of another client_encoding",
                ));
            }
            if name.to_ascii_lowercase().contains("pgshroud") {
                return Err(named("a name of one of pgshroud's identity settings"));
            }
        }
        Ok(())
    }

    /// An ErrorResponse: a switch outstanding did not happen (the server rolled it back with
    /// the rest of its transaction, or never ran it).
    pub(super) fn identity_error(&mut self) {
        if let Some(switch) = &mut self.tenant.in_flight {
            switch.failed = true;
        }
    }

    /// A ReadyForQuery with `status`: an outstanding switch without an error took effect. A
    /// switch that ended inside a transaction block is not certain: the session ends.
    pub(super) fn identity_ready(&mut self, status: u8) -> Option<Verdict> {
        self.tenant.idle = status == b'I';
        let switch = self.tenant.in_flight.take()?;
        if switch.failed {
            return None;
        }
        if status != b'I' {
            return Some(Verdict::End(PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("a switch of {TENANT} ended inside a transaction block: pgshroud cannot tell which tenant the server holds, and closed the connection"),
            )));
        }
        tracing::info!(
            tenant = switch.to.as_deref().unwrap_or(""),
            "session switched tenant"
        );
        // Per-tenant columns are sealed with the new tenant's key from the next statement on
        // (plans follow `tenant()` through their cache key).
        self.ciphers.set_tenant(switch.to.as_deref());
        self.tenant.current = switch.to;
        None
    }

    /// A FunctionCall of `set_config` by OID, refused whatever it names.
    pub(super) fn set_config_call_refused(&self) -> PgError {
        self.identity_refused(refused(
            "a FunctionCall (protocol message) of set_config, which pgshroud does not run for clients",
        ))
    }

    fn identity_refused(&self, error: PgError) -> PgError {
        tracing::info!(role = %self.role().name, "identity setting change refused: {}", error.message);
        self.metrics.refusal(RefusalReason::IdentitySetting);
        error
    }
}

/// The refusal of a change to an identity setting, naming what was asked (never a value).
fn refused(what: &str) -> PgError {
    PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("permission denied to change pgshroud's identity settings: {what}"),
    )
    .with_hint("pgshroud sets pgshroud.user, pgshroud.role and pgshroud.tenant from the identity it verified; row-level security policies rely on them. Only a role with choose_tenant may run SET pgshroud.tenant = 'id' (or RESET pgshroud.tenant), as a statement of its own.")
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
