//! The fixture's login roles. Each one is matched by its own pg_hba.conf line for TCP
//! connections from 127.0.0.1, so its name says how PostgreSQL authenticates it.

/// Bootstrap superuser. Unix socket: trust; TCP: SCRAM-SHA-256.
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-secret";
/// TCP: `scram-sha-256`; password stored as a SCRAM verifier. Owns every fresh database.
pub const SCRAM: &str = "scram_user";
pub const SCRAM_PASSWORD: &str = "scram-secret";
/// TCP: `md5`; password stored as an md5 hash (so the md5 exchange really happens).
pub const MD5: &str = "md5_user";
pub const MD5_PASSWORD: &str = "md5-secret";
/// TCP: `password` (cleartext on the wire); password stored as a SCRAM verifier.
pub const CLEARTEXT: &str = "cleartext_user";
pub const CLEARTEXT_PASSWORD: &str = "cleartext-secret";
/// TCP: `trust`; has no password.
pub const TRUST: &str = "trust_user";

/// The non-superuser fixture roles.
pub const ALL: [&str; 4] = [SCRAM, MD5, CLEARTEXT, TRUST];
/// A group (NOLOGIN): its members may log in over TCP only with TLS (`hostnossl` rejects
/// them), as on a production server that requires TLS. Tests create such members.
pub const TLS_ONLY: &str = "tls_only";
/// A non-superuser with the REPLICATION attribute. TCP: `trust`, for replication connections
/// (physical and logical) too, so PostgreSQL itself would let it stream.
pub const REPLICATOR: &str = "replicator";
