//! Protected columns on the wire: the per-session catalog of protected tables, refusals that
//! keep the session in step, and (with the rules) rewriting of statements, parameters and
//! results.

pub mod catalog;
pub mod refusal;
pub mod wire;
