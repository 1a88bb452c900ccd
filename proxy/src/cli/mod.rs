//! The command line: the arguments (`args`), and the commands that are not the proxy itself:
//! operator commands (`operator`: encrypt, decrypt, check), `setup` (the guard), `keys`
//! (values per key version), `rotate` (re-encryption under the active key), `migrate`
//! (plaintext column to protected and back), `rewrite` (the batch engine those two share),
//! `demo`, and `throwaway_pg`, the scratch PostgreSQL the demo and the integration tests start.

pub mod args;
pub mod demo;
pub mod forget;
pub mod keygen;
pub mod keys;
pub mod migrate;
pub mod operator;
pub mod rewrite;
pub mod rotate;
pub mod setup;
pub mod stored;
pub mod tenants;
pub mod textfile;
pub mod throwaway_pg;
