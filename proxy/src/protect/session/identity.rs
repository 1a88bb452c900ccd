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
    fn no_switch_in_flight(&self) -> Result<(), PgError> {
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
                "pgshroud could not read this statement with PostgreSQL's grammar; it was not sent",
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
mod tests {
    use super::super::testing::*;
    use super::ProtectedSession;

    const RULES: &str = r#"
default_role = "app"

[[roles]]
name = "app"
template = "app"
users = ["acme_app"]

[[roles]]
name = "pooled"
template = "app"
users = ["web"]
choose_tenant = true

[[tenants]]
id = "acme"
users = ["acme_app", "web"]
"#;

    fn ready(status: u8) -> BytesMut {
        message(b'Z', &[status])
    }

    use bytes::BytesMut;

    #[test]
    fn the_rules_tenant_is_the_sessions_until_a_switch_is_answered() {
        let mut s = session_under(RULES, "web");
        assert_eq!(s.tenant(), Some("acme"));
        let verdict = s.client_message(&query("SET pgshroud.tenant = 'globex'"));
        assert!(matches!(verdict, Verdict::Forward), "{verdict:?}");
        assert_eq!(s.tenant(), Some("acme"), "not before the server answered");
        // Nothing else may be sent while the switch is unanswered.
        let verdict = s.client_message(&query("SELECT 1"));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("25001"));
        answer(&mut s, &["CSET\0"]);
        assert!(matches!(s.server_message(&ready(b'I')), Verdict::Forward));
        // The refused SELECT's answer.
        s.server_message(&error("25001"));
        s.server_message(&ready(b'I'));
        assert_eq!(s.tenant(), Some("globex"));
        // RESET puts back the rules' tenant.
        s.client_message(&query("RESET pgshroud.tenant"));
        answer(&mut s, &["CRESET\0"]);
        s.server_message(&ready(b'I'));
        assert_eq!(s.tenant(), Some("acme"));
    }

    #[test]
    fn a_switch_that_fails_changes_nothing_and_one_in_a_block_ends_the_session() {
        let mut s = session_under(RULES, "web");
        for m in [
            parse("", "SET pgshroud.tenant = 'globex'"),
            bind("", ""),
            execute(""),
            sync(),
        ] {
            let verdict = s.client_message(&m);
            assert!(refusal_code(&verdict).is_none(), "{verdict:?}");
        }
        // The proxy's own Describe follows the Parse (ParameterDescription, NoData).
        answer(&mut s, &["1", "t\0\0", "n", "2", "CSET\0"]);
        s.server_message(&error("40001"));
        s.server_message(&ready(b'I'));
        assert_eq!(s.tenant(), Some("acme"));
        // Inside a transaction block: refused before it is sent.
        s.client_message(&query("BEGIN"));
        answer(&mut s, &["CBEGIN\0"]);
        s.server_message(&ready(b'T'));
        let verdict = s.client_message(&query("SET pgshroud.tenant = 'globex'"));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("25001"));
        s.server_message(&error("25001"));
        s.server_message(&ready(b'E'));
        s.client_message(&query("ROLLBACK"));
        answer(&mut s, &["CROLLBACK\0"]);
        s.server_message(&ready(b'I'));
        // A switch the server answers inside a block (a BEGIN answered but its ReadyForQuery
        // not yet in): pgshroud cannot tell, so the session ends.
        s.client_message(&query("SET pgshroud.tenant = 'globex'"));
        answer(&mut s, &["CSET\0"]);
        assert_eq!(end_code(s.server_message(&ready(b'T'))), "08P01");
    }

    #[test]
    fn roles_that_may_not_choose_and_bad_ids_are_refused() {
        let mut app = session_under(RULES, "acme_app");
        let verdict = app.client_message(&query("SET pgshroud.tenant = 'globex'"));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"));
        let mut web = session_under(RULES, "web");
        let verdict = web.client_message(&query("SET pgshroud.tenant = '../x'"));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("22023"));
        // A FunctionCall of set_config by OID.
        let mut call = 2078u32.to_be_bytes().to_vec();
        call.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let verdict = web.client_message(&message(b'F', &call));
        assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"));
        assert_eq!(web.tenant(), Some("acme"));
    }

    /// A Parse of `sql` as `s`, then `binds` of it in the same pipeline: the refusal codes of
    /// the Binds (the proxy judges each as it arrives).
    fn bound(
        s: &mut ProtectedSession,
        sql: &str,
        types: &[u32],
        binds: &[BytesMut],
    ) -> Vec<Option<String>> {
        let parse = wire::Parse {
            name: "s".into(),
            query: sql.as_bytes().to_vec(),
            param_types: types.to_vec(),
        };
        let verdict = s.client_message(&parse.write());
        assert_eq!(refusal_code(&verdict), None, "{sql}");
        binds
            .iter()
            .map(|b| refusal_code(&s.client_message(b)))
            .collect()
    }

    fn names(values: &[&str]) -> BytesMut {
        bind_params("", "s", values)
    }

    #[test]
    fn a_set_config_name_bound_as_a_parameter_is_read_from_each_bind() {
        let mut s = session_under(RULES, "web");
        let sql = "SELECT set_config($1, $2, false)";
        let codes = bound(
            &mut s,
            sql,
            &[],
            &[
                names(&["search_path", "public"]),
                names(&["pgshroud.tenant", "globex"]),
                names(&["PgShroud.Role", "admin"]),
                names(&["pgshroud.user ", "x"]),
                names(&["DateStyle", "ISO"]),
            ],
        );
        let refused = Some("42501".to_owned());
        assert_eq!(
            codes,
            [None, refused.clone(), refused.clone(), refused, None]
        );
        assert_eq!(s.tenant(), Some("acme"));
    }

    #[test]
    fn a_bound_name_the_proxy_cannot_read_as_the_server_does_is_refused() {
        let mut s = session_under(RULES, "web");
        let binary = wire::Bind {
            portal: String::new(),
            statement: "s".into(),
            param_formats: vec![1],
            params: vec![Some(b"search_path".to_vec()), Some(b"x".to_vec())],
            result_formats: Vec::new(),
        }
        .write();
        let not_utf8 = wire::Bind {
            portal: String::new(),
            statement: "s".into(),
            param_formats: Vec::new(),
            params: vec![Some(b"search_path\xff".to_vec()), Some(b"x".to_vec())],
            result_formats: Vec::new(),
        }
        .write();
        let null = wire::Bind {
            portal: String::new(),
            statement: "s".into(),
            param_formats: Vec::new(),
            params: vec![None, Some(b"x".to_vec())],
            result_formats: Vec::new(),
        }
        .write();
        let codes = bound(
            &mut s,
            "SELECT set_config($1, $2, false)",
            &[],
            &[binary, not_utf8, null],
        );
        // PostgreSQL raises its own error for a NULL name: nothing is set.
        assert_eq!(codes, [Some("42501".into()), Some("42501".into()), None]);
        // Declared of a type other than text or varchar: a cast could compute the name.
        let mut s = session_under(RULES, "web");
        let codes = bound(
            &mut s,
            "SELECT set_config($1, $2, false)",
            &[19, 25],
            &[names(&["search_path", "x"])],
        );
        assert_eq!(codes, [Some("42501".into())]);
        let mut s = session_under(RULES, "web");
        let codes = bound(
            &mut s,
            "SELECT set_config($1, $2, false)",
            &[1043, 25],
            &[names(&["search_path", "x"])],
        );
        assert_eq!(codes, [None]);
    }

    #[test]
    fn a_bound_setting_name_is_refused_where_its_value_is_not_the_binds() {
        // A simple query has no parameters; PREPARE's are EXECUTE's arguments.
        for sql in [
            "SELECT set_config($1, 'x', false)",
            "PREPARE p AS SELECT set_config($1, 'x', false)",
        ] {
            let mut s = session_under(RULES, "web");
            let verdict = s.client_message(&query(sql));
            assert_eq!(refusal_code(&verdict).as_deref(), Some("42501"), "{sql}");
            let mut s = session_under(RULES, "web");
            let verdict = s.client_message(&parse("", sql));
            let expected = sql.starts_with("PREPARE").then(|| "42501".to_owned());
            assert_eq!(refusal_code(&verdict), expected, "{sql}");
        }
    }

    #[test]
    fn each_bind_is_judged_by_the_statement_the_name_holds_now() {
        // Parse once, Bind many; then the name prepared again with another text: its Binds
        // follow the new text's reading, not the old one's.
        let mut s = session_under(RULES, "web");
        let codes = bound(&mut s, "SELECT 1", &[], &[names(&[]), names(&[])]);
        assert_eq!(codes, [None, None]);
        s.client_message(&message(b'C', b"Ss\0"));
        let codes = bound(
            &mut s,
            "SELECT set_config($1, 'x', false)",
            &[],
            &[names(&["pgshroud.tenant"]), names(&["work_mem"])],
        );
        assert_eq!(codes, [Some("42501".into()), None]);
        // A tenant switch prepared once starts a switch at its Bind, and nothing else may be
        // bound until its answer is in.
        let mut s = session_under(RULES, "web");
        let parse = parse("t", "SET pgshroud.tenant = 'globex'");
        assert_eq!(refusal_code(&s.client_message(&parse)), None);
        s.client_message(&sync());
        answer(&mut s, &["1", "t\0\0", "n", "ZI"]);
        assert_eq!(refusal_code(&s.client_message(&bind("", "t"))), None);
        let again = s.client_message(&bind("", "t"));
        assert_eq!(refusal_code(&again).as_deref(), Some("25001"));
    }

    #[test]
    fn the_same_identity_change_is_refused_in_simple_and_extended_protocol() {
        for sql in [
            "SELECT set_config('pgshroud.tenant', 'x', false)",
            "SET pgshroud.role = 'admin'",
            "SELECT set_config($1::text, 'x', false)",
            "SET pgshroud.tenant = 'globex'",
        ] {
            let mut app = session_under(RULES, "acme_app");
            let simple = app.client_message(&query(sql));
            assert_eq!(refusal_code(&simple).as_deref(), Some("42501"), "{sql}");
            let mut app = session_under(RULES, "acme_app");
            let extended = app.client_message(&parse("", sql));
            assert_eq!(refusal_code(&extended).as_deref(), Some("42501"), "{sql}");
        }
    }
}
