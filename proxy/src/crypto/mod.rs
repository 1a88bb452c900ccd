//! Deterministic column encryption (AES-256-SIV), keys and the stored envelope.
