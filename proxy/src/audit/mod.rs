//! Audit events, their tamper-evident chain, and the sinks that write them.
