//! The label values of pgshroud's metrics: one closed enum per label keeps series bounded,
//! and [`CountersBy`] resolves one counter per value at registration.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label values are fixed strings: a closed enum per label keeps series bounded.
pub(super) trait LabelEnum: Copy + 'static {
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    fn index(self) -> usize;
}

/// Declares a label enum with its `as_str` text and the [`LabelEnum`] plumbing.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value as it appears in the metrics text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl LabelEnum for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn label(self) -> &'static str {
                self.as_str()
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// Why a client connection ended in error (`connection_errors_total{reason}`).
    ConnectionErrorReason {
        /// The TLS handshake with the client failed.
        Tls => "tls",
        /// The client sent no complete startup packet in time.
        StartupTimeout => "startup_timeout",
        /// The startup packet was malformed or asked for an unsupported protocol.
        InvalidStartup => "invalid_startup",
        /// `max_client_connections` was reached.
        TooManyConnections => "too_many_connections",
        /// Connecting to (or the TLS handshake with) the upstream server failed.
        UpstreamConnect => "upstream_connect",
        /// Upstream rejected the credentials.
        AuthFailed => "auth_failed",
        /// The caller's role does not allow its source network: 28000.
        NetworkDenied => "network_denied",
        /// A frame was malformed.
        Protocol => "protocol",
        /// A frame exceeded `max_message_size`.
        MessageTooLarge => "message_too_large",
        /// The connection sat idle past `idle_timeout_secs`.
        IdleTimeout => "idle_timeout",
        /// A socket read or write failed.
        Io => "io",
    }
}

/// What a statement does (`statements_total{kind}`): the one classification of
/// [`crate::analyze::StatementKind`], from the server's CommandComplete tag.
pub use crate::analyze::StatementKind;

impl LabelEnum for StatementKind {
    const ALL: &'static [Self] = StatementKind::ALL;
    fn label(self) -> &'static str {
        self.as_str()
    }
    fn index(self) -> usize {
        self as usize
    }
}

label_enum! {
    /// How a statement ended (`statements_total{outcome}`).
    StatementOutcome {
        Ok => "ok",
        /// PostgreSQL answered with an error.
        Error => "error",
        /// pgshroud refused it before it reached PostgreSQL.
        Refused => "refused",
    }
}

label_enum! {
    /// The direction of a crypto operation (`crypto_operations_total{op}`).
    CryptoOp {
        Encrypt => "encrypt",
        Decrypt => "decrypt",
    }
}

label_enum! {
    /// What happened to a protected value (`protected_values_total{action}`); the same words as
    /// the audit event's column actions.
    ProtectedValueAction {
        /// Encrypted on the way in.
        Encrypted => "encrypted",
        /// Returned as plaintext.
        Decrypted => "decrypted",
        /// Returned masked.
        Masked => "masked",
        /// Returned as NULL.
        Nulled => "nulled",
        /// Returned as stored ciphertext.
        Ciphertext => "ciphertext",
    }
}

label_enum! {
    /// Why pgshroud refused a statement (`refusals_total{reason}`).
    RefusalReason {
        /// An operation deterministic encryption cannot support (LIKE, <, ORDER BY, ...): 0A000.
        UnsupportedOperation => "unsupported_operation",
        /// The statement mentions a protected table but does not parse: 42601.
        Unparseable => "unparseable",
        /// The caller's role has `deny` on a referenced column (or is `auditor`): 42501.
        ColumnDenied => "column_denied",
        /// The caller's role may not write a referenced protected column: 42501.
        WriteDenied => "write_denied",
        /// The caller's role may not compare a protected column with a value it supplies: 42501.
        CompareDenied => "compare_denied",
        /// Columns the role sees differently would meet in one result, comparison or copy: 42501.
        MixedActions => "mixed_actions",
        /// The statement kind is not in the role's `statements` list.
        StatementKindDenied => "statement_kind_denied",
        /// A result column could carry a protected value whose origin cannot be mapped.
        UnmappedOutput => "unmapped_output",
        /// The role's `max_rows` with `enforce = true` ended the statement.
        RowLimit => "row_limit",
        /// A write to a protected column that has no guard in the database: 55000.
        Unguarded => "unguarded_column",
        /// A change of pgshroud's identity settings (`pgshroud.*`) the client may not make:
        /// 42501 (or a tenant switch where its outcome would be uncertain: 25001).
        IdentitySetting => "identity_setting",
    }
}

label_enum! {
    /// Where a statement's plan came from (`plan_cache_lookups_total{result}`).
    PlanCacheResult {
        /// The exact text was planned before.
        ExactHit => "exact_hit",
        /// A text of the same shape was: its template was filled with this text's literals.
        ShapeHit => "shape_hit",
        /// Analysed in full.
        Miss => "miss",
    }
}

label_enum! {
    /// Which per-role limit raised an alert (`alerts_total{kind}`); named after the rules keys.
    AlertKind {
        /// One statement returned more rows than the role's `max_rows` (a bulk read).
        MaxRows => "max_rows",
        /// A session read more protected values per minute than the role allows (a bulk read).
        MaxProtectedValuesPerMinute => "max_protected_values_per_minute",
        /// The caller connected from outside the role's `networks`.
        Network => "network",
    }
}

label_enum! {
    /// How a rules reload ended (`rules_reloads_total{result}`).
    ReloadResult {
        /// The new rules are live.
        Ok => "ok",
        /// The new file was invalid; the old rules stay live.
        Rejected => "rejected",
    }
}

label_enum! {
    /// The KMS API operation the proxy called (`kms_calls_total{operation}`).
    KmsCall {
        /// Before each Decrypt: names a disabled or deleted key as such.
        DescribeKey => "describe_key",
        /// Unwraps a master key (start-up and reload only).
        Decrypt => "decrypt",
    }
}

label_enum! {
    /// Why a KMS call failed (`kms_failures_total{reason}`).
    KmsFailureReason {
        Unreachable => "unreachable",
        CredentialsMissing => "credentials_missing",
        CredentialsRejected => "credentials_rejected",
        NoRegion => "no_region",
        KeyNotFound => "key_not_found",
        KeyNotEnabled => "key_not_enabled",
        AccessDenied => "access_denied",
        WrongKey => "wrong_key",
        Other => "other",
    }
}

label_enum! {
    /// Which way bytes flowed through the proxy (`bytes_total{direction}`).
    Direction {
        ClientToServer => "client_to_server",
        ServerToClient => "server_to_client",
    }
}

/// One counter per value of a label enum, resolved at registration so an update is an index and
/// an atomic add.
pub(super) struct CountersBy<E> {
    counters: Box<[Counter]>,
    label: std::marker::PhantomData<fn(E)>,
}

impl<E: LabelEnum> CountersBy<E> {
    pub(super) fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        key: &'static str,
    ) -> Self {
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let counters = E::ALL
            .iter()
            .map(|value| family.get_or_create_owned(&[(key, value.label())]))
            .collect();
        registry.register(name, help, family);
        Self {
            counters,
            label: std::marker::PhantomData,
        }
    }

    pub(super) fn add(&self, value: E, n: u64) {
        if let Some(counter) = self.counters.get(value.index()) {
            counter.inc_by(n);
        }
    }
}
