//! Values of protected columns as clients send them (text and binary, single values and
//! arrays for `= ANY($n)`) and as the database hands them back (envelopes, canonical bytes).
//! Whatever reads as a value must print, in both formats, as something that reads back to the
//! same canonical bytes: otherwise equal values would encrypt differently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud::crypto::Envelope;
use pgshroud::values::{
    array, binary_from_canonical, canonical_from_binary, canonical_from_text, text_from_canonical,
};
use pgshroud_rules::{LogicalType, BYTEA_OID};

fuzz_target!(|data: &[u8]| {
    let Some((&[ty, mode], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let t = LogicalType::ALL[usize::from(ty) % LogicalType::ALL.len()];
    match mode % 4 {
        0 => {
            if let Ok(text) = std::str::from_utf8(input) {
                if let Ok(canonical) = canonical_from_text(t, text) {
                    round_trip(t, &canonical);
                }
            }
        }
        1 => {
            if let Ok(canonical) = canonical_from_binary(t, input) {
                round_trip(t, &canonical);
            }
        }
        2 => {
            // Canonical bytes come out of decryption, so they are authentic, but a value
            // sealed by another version of pgshroud must still not crash the printers.
            let _ = text_from_canonical(t, input);
            let _ = binary_from_canonical(t, input);
        }
        _ => arrays_and_envelopes(input),
    }
});

fn round_trip(t: LogicalType, canonical: &[u8]) {
    let text = text_from_canonical(t, canonical)
        .unwrap_or_else(|e| panic!("{} canonical form does not print: {e}", t.name()));
    assert_eq!(
        canonical_from_text(t, &text).as_deref(),
        Ok(canonical),
        "{} text output {text:?} reads back differently",
        t.name()
    );
    let binary = binary_from_canonical(t, canonical)
        .unwrap_or_else(|e| panic!("{} canonical form does not send: {e}", t.name()));
    assert_eq!(
        canonical_from_binary(t, &binary).as_deref(),
        Ok(canonical),
        "{} binary output reads back differently",
        t.name()
    );
}

fn arrays_and_envelopes(input: &[u8]) {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = array::parse_text(text);
    }
    if let Ok((_, elements)) = array::parse_binary(input) {
        assert_eq!(
            array::parse_binary(&array::bytea_array_binary(&elements)),
            Ok((BYTEA_OID, elements.clone()))
        );
        let text = array::bytea_array_text(&elements);
        let parsed = array::parse_text(&text).expect("bytea[] text output reads back");
        let expected: Vec<Option<String>> = elements
            .iter()
            .map(|e| e.as_ref().map(|b| format!("\\x{}", hex(b))))
            .collect();
        assert_eq!(parsed, expected);
    }
    if let Ok(envelope) = Envelope::parse(input) {
        assert!(envelope.ciphertext.len() < input.len());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
