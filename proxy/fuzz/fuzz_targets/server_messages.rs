//! A server's byte stream after authentication: typed messages read by the proxy's frame
//! reader, each handed to every server-message decoder (RowDescription, DataRow,
//! ParameterDescription, error and notice fields, the catalog look-up's text rows, the
//! refusal rewrite of an ErrorResponse). Decoded messages must survive a write and re-read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshroud::protect::catalog::data_row_text;
use pgshroud::protect::refusal::without_server_context;
use pgshroud::protect::wire::{
    read_data_row, read_parameter_description, read_row_description, write_data_row,
    write_parameter_description, write_row_description,
};
use pgshroud::protocol::fields::{field, is_fatal};
use pgshroud_fuzz::frames;

fuzz_target!(|data: &[u8]| {
    for frame in frames(data) {
        decode(frame);
    }
});

fn decode(frame: &[u8]) {
    if let Ok(fields) = read_row_description(frame) {
        assert_eq!(
            read_row_description(&write_row_description(&fields)).as_ref(),
            Ok(&fields)
        );
    }
    if let Ok(types) = read_parameter_description(frame) {
        assert_eq!(
            read_parameter_description(&write_parameter_description(&types)).as_ref(),
            Ok(&types)
        );
    }
    if let Ok(values) = read_data_row(frame) {
        assert_eq!(
            read_data_row(&write_data_row(&values)).as_ref(),
            Ok(&values)
        );
        // The catalog look-up reads the same rows as text: same count, same NULLs.
        let text = data_row_text(frame);
        assert_eq!(text.len(), values.len());
        for (t, v) in text.iter().zip(&values) {
            assert_eq!(t.is_none(), v.is_none());
        }
    } else {
        data_row_text(frame);
    }
    for code in [b'S', b'V', b'C', b'M', b'D', b'H', b'W', b'F', b'L', b'R'] {
        field(frame, code);
    }
    let fatal = is_fatal(frame);
    // The refusal rewrite keeps every field a client may rely on, and the severity.
    let cleaned = without_server_context(frame);
    for code in [b'S', b'V', b'C', b'M', b'D', b'H'] {
        if let Some(value) = field(frame, code) {
            assert_eq!(field(&cleaned, code), Some(value), "field {}", code as char);
        }
    }
    for code in [b'W', b'F', b'L', b'R'] {
        assert_eq!(field(&cleaned, code), None);
    }
    assert_eq!(is_fatal(&cleaned), fatal);
}
