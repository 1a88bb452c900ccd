//! Behaviour of the streaming rewriter on whole COPY streams, fed whole and in pieces.

use super::*;

/// Stand-in for encryption: the value's bytes as bytea hex text, NULL stays NULL.
fn to_hex(_column: usize, value: Option<&str>) -> Result<Option<String>, CopyCodecError> {
    Ok(value.map(|v| {
        let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
        format!("\\x{hex}")
    }))
}

/// Stand-in for decryption: bytea hex text back to the value.
fn from_hex(column: usize, value: Option<&str>) -> Result<Option<String>, CopyCodecError> {
    let Some(v) = value else { return Ok(None) };
    let hex = v
        .strip_prefix("\\x")
        .ok_or_else(|| CopyCodecError::field(column, "not bytea hex"))?;
    let bytes: Result<Vec<u8>, _> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect();
    let bytes = bytes.map_err(|_| CopyCodecError::field(column, "bad hex"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| CopyCodecError::field(column, "bad utf-8"))
}

fn run_chunks(
    format: &CopyFormat,
    protected: &[bool],
    chunks: &[&[u8]],
    mut t: impl FieldTransform,
) -> Result<Vec<u8>, CopyCodecError> {
    let mut rw = CopyRewriter::new(format.clone(), protected.to_vec());
    let mut out = Vec::new();
    for chunk in chunks {
        rw.feed(chunk, &mut t, &mut out)?;
    }
    rw.finish(&mut t, &mut out)?;
    Ok(out)
}

fn run(
    format: &CopyFormat,
    protected: &[bool],
    input: &str,
    t: impl FieldTransform,
) -> Result<String, CopyCodecError> {
    let out = run_chunks(format, protected, &[input.as_bytes()], t)?;
    Ok(String::from_utf8(out).unwrap())
}

/// Output (or error text) when fed whole, one byte at a time, and split in two at every offset:
/// all must agree, whatever the chunking.
fn run_every_split(format: &CopyFormat, protected: &[bool], input: &[u8]) -> String {
    let render = |r: Result<Vec<u8>, CopyCodecError>| match r {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("error: {e}"),
    };
    let whole = render(run_chunks(format, protected, &[input], to_hex));
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        render(run_chunks(format, protected, &bytes, to_hex)),
        whole,
        "byte at a time"
    );
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let split = render(run_chunks(format, protected, &[a, b], to_hex));
        assert_eq!(split, whole, "split at {i}");
    }
    whole
}

fn hex(s: &str) -> String {
    to_hex(0, Some(s)).unwrap().unwrap()
}

#[test]
fn text_protected_field_becomes_escaped_bytea_text() {
    let out = run(&CopyFormat::text(), &[false, true], "1\tsecret\n", to_hex).unwrap();
    assert_eq!(out, format!("1\t\\{}\n", hex("secret")));
}

#[test]
fn transform_sees_column_indexes_of_protected_fields_only() {
    let mut columns = Vec::new();
    let t = |c: usize, v: Option<&str>| {
        columns.push(c);
        Ok(v.map(str::to_owned))
    };
    let out = run(&CopyFormat::csv(), &[true, false, true], "a,b,c\nd,e,f", t).unwrap();
    assert_eq!(columns, [0, 2, 0, 2]);
    assert_eq!(out, "a,b,c\nd,e,f");
}

#[test]
fn text_unprotected_fields_are_byte_identical() {
    let input = "a\\tb\\101\\\\\t\\N\tx\\\ny\t\\x4G\tp\n";
    let out = run(
        &CopyFormat::text(),
        &[false, false, false, false, true],
        input,
        to_hex,
    )
    .unwrap();
    assert_eq!(
        out,
        format!("a\\tb\\101\\\\\t\\N\tx\\\ny\t\\x4G\t\\{}\n", hex("p"))
    );
}

#[test]
fn text_escapes_are_decoded_before_transform() {
    let mut seen = Vec::new();
    let t = |_: usize, v: Option<&str>| {
        seen.push(v.map(str::to_owned));
        Ok(Some("ok".to_owned()))
    };
    let input = "a\\tb\\nc\\\\d\\101\\x42\\q\t\\N\t\\\\N\n";
    run(&CopyFormat::text(), &[true, true, true], input, t).unwrap();
    assert_eq!(
        seen,
        [
            Some("a\tb\nc\\dABq".to_owned()),
            None,
            Some("\\N".to_owned())
        ]
    );
}

#[test]
fn text_transform_output_is_escaped() {
    let t = |_: usize, _: Option<&str>| Ok(Some("a\tb\nc\\d".to_owned()));
    let out = run(&CopyFormat::text(), &[true, false], "x\ty\n", t).unwrap();
    assert_eq!(out, "a\\tb\\nc\\\\d\ty\n");
}

#[test]
fn text_null_and_empty_string_stay_distinct() {
    let mut seen = Vec::new();
    let t = |_: usize, v: Option<&str>| {
        seen.push(v.map(str::to_owned));
        Ok(v.map(|_| String::new()))
    };
    let out = run(&CopyFormat::text(), &[true, true], "\\N\t\n", t).unwrap();
    assert_eq!(seen, [None, Some(String::new())]);
    assert_eq!(out, "\\N\t\n");
}

#[test]
fn text_crlf_endings_are_kept() {
    let out = run(
        &CopyFormat::text(),
        &[true, false],
        "a\tb\r\nc\td\n",
        to_hex,
    )
    .unwrap();
    assert_eq!(out, format!("\\{}\tb\r\n\\{}\td\n", hex("a"), hex("c")));
}

#[test]
fn text_crlf_row_with_protected_last_field_excludes_cr_from_value() {
    let out = run(&CopyFormat::text(), &[false, true], "1\tv\r\n", to_hex).unwrap();
    assert_eq!(out, format!("1\t\\{}\r\n", hex("v")));
}

#[test]
fn text_escaped_newline_stays_inside_the_field() {
    let mut seen = Vec::new();
    let t = |_: usize, v: Option<&str>| {
        seen.push(v.map(str::to_owned));
        Ok(Some("x".to_owned()))
    };
    let out = run(&CopyFormat::text(), &[true, false], "a\\\nb\tc\n", t).unwrap();
    assert_eq!(seen, [Some("a\nb".to_owned())]);
    assert_eq!(out, "x\tc\n");
}

#[test]
fn text_custom_delimiter_and_null() {
    let format = CopyFormat {
        delimiter: b'|',
        null: "NULL".into(),
        ..CopyFormat::text()
    };
    let t = |_: usize, v: Option<&str>| Ok(v.map(|v| format!("{v}|{v}")));
    let out = run(&format, &[true, true, false], "a\\|b|NULL|NULL\n", t).unwrap();
    assert_eq!(out, "a\\|b\\|a\\|b|NULL|NULL\n");
}

#[test]
fn text_end_marker_passes_through_and_ends_data() {
    let format = CopyFormat::text();
    let mut rw = CopyRewriter::new(format, vec![true]);
    let mut out = Vec::new();
    let mut t = to_hex;
    rw.feed(b"a\n\\.\r\nb\nwrong\tcount\n", &mut t, &mut out)
        .unwrap();
    assert!(rw.is_done());
    rw.feed(b"more\n", &mut t, &mut out).unwrap();
    rw.finish(&mut t, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("\\{}\n\\.\r\n", hex("a"))
    );
}

#[test]
fn text_end_marker_without_newline_at_finish() {
    let out = run(&CopyFormat::text(), &[true], "a\n\\.", to_hex).unwrap();
    assert_eq!(out, format!("\\{}\n\\.", hex("a")));
}

#[test]
fn escaped_backslash_dot_is_data_not_end_marker() {
    let out = run(&CopyFormat::text(), &[false], "\\\\.\nb\n", to_hex).unwrap();
    assert_eq!(out, "\\\\.\nb\n");
}

#[test]
fn final_row_without_newline_is_processed_at_finish() {
    let out = run(&CopyFormat::text(), &[true], "a\nb", to_hex).unwrap();
    assert_eq!(out, format!("\\{}\n\\{}", hex("a"), hex("b")));
}

#[test]
fn final_row_that_rewrites_to_nothing_stays_a_row() {
    // Found by the copy_codec fuzz target: the empty string of a one-column row without
    // line ending was written as nothing, so the row disappeared.
    let out = run(&CopyFormat::text(), &[true], r"\\x", from_hex).unwrap();
    assert_eq!(out, "\n");
    assert_eq!(
        run(&CopyFormat::text(), &[true], &out, to_hex).unwrap(),
        "\\\\x\n"
    );
}

#[test]
fn empty_stream_produces_nothing() {
    assert_eq!(run(&CopyFormat::text(), &[true], "", to_hex).unwrap(), "");
    assert_eq!(run(&CopyFormat::csv(), &[true], "", to_hex).unwrap(), "");
}

#[test]
fn header_line_passes_through_unchecked() {
    let format = CopyFormat {
        header: true,
        ..CopyFormat::csv()
    };
    let out = run(
        &format,
        &[false, true],
        "id,\"se,cret\",extra\n1,v\n",
        to_hex,
    )
    .unwrap();
    assert_eq!(out, format!("id,\"se,cret\",extra\n1,{}\n", hex("v")));
    let text = CopyFormat {
        header: true,
        ..CopyFormat::text()
    };
    let out = run(&text, &[true], "name\nv\n", to_hex).unwrap();
    assert_eq!(out, format!("name\n\\{}\n", hex("v")));
}

#[test]
fn csv_protected_field_is_rewritten_and_quoting_elsewhere_kept() {
    let input = "\"a,b\",x,\"q\"\"q\"\n";
    let out = run(&CopyFormat::csv(), &[false, true, false], input, to_hex).unwrap();
    assert_eq!(out, format!("\"a,b\",{},\"q\"\"q\"\n", hex("x")));
}

#[test]
fn csv_quoted_delimiters_and_newlines_reach_transform_unquoted() {
    let mut seen = Vec::new();
    let t = |_: usize, v: Option<&str>| {
        seen.push(v.map(str::to_owned));
        Ok(Some("z".to_owned()))
    };
    let input = "\"line1\nline2, \"\"q\"\"\",b\n";
    let out = run(&CopyFormat::csv(), &[true, false], input, t).unwrap();
    assert_eq!(seen, [Some("line1\nline2, \"q\"".to_owned())]);
    assert_eq!(out, "z,b\n");
}

#[test]
fn csv_transform_output_is_quoted_when_needed() {
    let t = |_: usize, v: Option<&str>| Ok(v.map(|v| format!("{v},\"\n")));
    let out = run(&CopyFormat::csv(), &[true, false], "a,b\r\n", t).unwrap();
    assert_eq!(out, "\"a,\"\"\n\",b\r\n");
}

#[test]
fn csv_null_and_empty_string_stay_distinct() {
    let mut seen = Vec::new();
    let t = |_: usize, v: Option<&str>| {
        seen.push(v.map(str::to_owned));
        Ok(v.map(str::to_owned))
    };
    let out = run(&CopyFormat::csv(), &[true, true], ",\"\"\n", t).unwrap();
    assert_eq!(seen, [None, Some(String::new())]);
    assert_eq!(out, ",\"\"\n");
}

#[test]
fn csv_end_marker_ends_data_but_quoted_one_is_data() {
    let out = run(
        &CopyFormat::csv(),
        &[true],
        "\"\\.\"\n\\.\nignored\n",
        to_hex,
    )
    .unwrap();
    assert_eq!(out, format!("{}\n\\.\n", hex("\\.")));
}

#[test]
fn csv_unterminated_quote_at_end_is_an_error() {
    let err = run(&CopyFormat::csv(), &[true, false], "a,b\n\"c,d\n", to_hex).unwrap_err();
    assert!(matches!(err, CopyCodecError::UnterminatedQuote { line: 2 }));
}

#[test]
fn wrong_field_count_reports_line_number() {
    let err = run(&CopyFormat::text(), &[true, false], "a\tb\nc\n", to_hex).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::WrongFieldCount {
            line: 2,
            expected: 2,
            found: 1
        }
    ));
    let err = run(&CopyFormat::text(), &[false], "a\tb\n", to_hex).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::WrongFieldCount {
            line: 1,
            expected: 1,
            found: 2
        }
    ));
}

#[test]
fn line_numbers_count_header_and_multiline_csv_rows_once() {
    let format = CopyFormat {
        header: true,
        ..CopyFormat::csv()
    };
    let input = "h1,h2\n\"a\nb\",c\nd,e,f\n";
    let err = run(&format, &[true, false], input, to_hex).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::WrongFieldCount {
            line: 3,
            found: 3,
            ..
        }
    ));
}

#[test]
fn transform_error_propagates_with_line_and_no_output() {
    let format = CopyFormat::text();
    let mut rw = CopyRewriter::new(format, vec![false, true]);
    let mut out = b"earlier".to_vec();
    let mut t = from_hex;
    let err = rw
        .feed(b"1\t\\\\x41\n2\tnot-hex\n", &mut t, &mut out)
        .unwrap_err();
    match err {
        CopyCodecError::Field { line, column, .. } => assert_eq!((line, column), (2, 1)),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(out, b"earlier");
    assert!(matches!(
        rw.feed(b"3\t\\\\x41\n", &mut t, &mut out),
        Err(CopyCodecError::AlreadyFailed)
    ));
    assert!(matches!(
        rw.finish(&mut t, &mut out),
        Err(CopyCodecError::AlreadyFailed)
    ));
}

#[test]
fn invalid_utf8_in_protected_field_is_refused() {
    let format = CopyFormat::text();
    let out = run_chunks(&format, &[false, true], &[b"\xff\tok\n"], to_hex).unwrap();
    let mut expected = b"\xff\t\\".to_vec();
    expected.extend_from_slice(hex("ok").as_bytes());
    expected.push(b'\n');
    assert_eq!(out, expected);
    let err = run_chunks(&format, &[false, true], &[b"a\t\\377\n"], to_hex).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::InvalidUtf8 { line: 1, column: 1 }
    ));
}

#[test]
fn nul_character_in_protected_field_is_refused() {
    let err = run(&CopyFormat::text(), &[true], "a\\000b\n", to_hex).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::NulCharacter { line: 1, column: 0 }
    ));
}

#[test]
fn unicode_values_round_trip_through_encrypt_and_decrypt() {
    for format in [CopyFormat::text(), CopyFormat::csv()] {
        let delim = format.delimiter as char;
        let input = format!("1{delim}héllo wörld 世界 🎉\n");
        let enc = run(&format, &[false, true], &input, to_hex).unwrap();
        assert!(enc.is_ascii());
        let dec = run(&format, &[false, true], &enc, from_hex).unwrap();
        assert_eq!(dec, input);
    }
}

#[test]
fn copy_to_stdout_bytea_text_decrypts() {
    let server = format!("7\t\\{}\n\\N\t\\N\n", hex("tab\there"));
    let out = run(&CopyFormat::text(), &[false, true], &server, from_hex).unwrap();
    assert_eq!(out, "7\ttab\\there\n\\N\t\\N\n");
}

#[test]
fn row_over_limit_is_refused() {
    let mut rw = CopyRewriter::new(CopyFormat::text(), vec![true]).with_max_row_len(8);
    let mut out = Vec::new();
    let mut t = to_hex;
    rw.feed(b"1234567\n", &mut t, &mut out).unwrap();
    rw.feed(b"12345", &mut t, &mut out).unwrap();
    let err = rw.feed(b"6789", &mut t, &mut out).unwrap_err();
    assert!(matches!(
        err,
        CopyCodecError::RowTooLarge { line: 2, limit: 8 }
    ));
}

#[test]
fn text_stream_splits_anywhere() {
    let input = "1\tsecr\\tet\\\\x\\101\\x4a\r\n\\N\t\\\\N\n2\t\\\nmulti\n3\t\n\\.\nrest";
    let out = run_every_split(&CopyFormat::text(), &[false, true], input.as_bytes());
    assert!(out.ends_with("\\.\n"), "{out}");
    assert!(!out.contains("secr"), "{out}");
}

#[test]
fn csv_stream_splits_anywhere() {
    let format = CopyFormat {
        header: true,
        ..CopyFormat::csv()
    };
    let input = "a,b\r\n\"x,\ny\"\"\",\"p\"\"q\"\r\n,\"\"\nplain,\"é\"\n";
    let out = run_every_split(&format, &[true, false], input.as_bytes());
    assert!(out.starts_with("a,b\r\n"), "{out}");
    assert!(out.contains(",\"p\"\"q\"\r\n"), "{out}");
}

#[test]
fn csv_with_backslash_escape_splits_anywhere() {
    let format = CopyFormat {
        escape: b'\\',
        ..CopyFormat::csv()
    };
    let input = "\"a\\\"b\\\\\",\"c\\\"\nd\"\n";
    let out = run_every_split(&format, &[true, true], input.as_bytes());
    assert_eq!(out, format!("{},{}\n", hex("a\"b\\"), hex("c\"\nd")));
}

#[test]
fn errors_split_anywhere_match_whole() {
    let out = run_every_split(&CopyFormat::csv(), &[true], b"a\n\"b,c\n");
    assert!(out.starts_with("error:"), "{out}");
}

#[test]
fn debug_and_errors_do_not_show_values() {
    let mut rw = CopyRewriter::new(CopyFormat::text(), vec![true, true]);
    let mut out = Vec::new();
    let mut t = to_hex;
    rw.feed(b"topsecret\tx", &mut t, &mut out).unwrap();
    assert!(!format!("{rw:?}").contains("topsecret"));
    let err = run(&CopyFormat::text(), &[true, true], "topsecret\n", to_hex).unwrap_err();
    assert!(!err.to_string().contains("topsecret"));
}

#[test]
fn format_validation_rejects_ambiguous_options() {
    assert!(CopyFormat::text().validate().is_ok());
    assert!(CopyFormat::csv().validate().is_ok());
    let bad = [
        CopyFormat {
            delimiter: b'\\',
            ..CopyFormat::text()
        },
        CopyFormat {
            delimiter: b'\n',
            ..CopyFormat::csv()
        },
        CopyFormat {
            delimiter: b'"',
            ..CopyFormat::csv()
        },
        CopyFormat {
            null: "a\nb".into(),
            ..CopyFormat::text()
        },
        // Found by the copy_codec fuzz target: with a newline as quote, the empty string
        // written back as `""` split its row in two.
        CopyFormat {
            quote: b'\n',
            escape: b'\n',
            ..CopyFormat::csv()
        },
        CopyFormat {
            escape: b'\r',
            ..CopyFormat::csv()
        },
        // Found by the copy_codec fuzz target: with `x` as delimiter, the `x` of a bytea
        // value's `\x` was escaped into `\\\x`, which reads back as a hex escape.
        CopyFormat {
            delimiter: b'x',
            ..CopyFormat::text()
        },
        CopyFormat {
            delimiter: b'7',
            ..CopyFormat::text()
        },
    ];
    for format in bad {
        assert!(format.validate().is_err(), "{format:?}");
    }
}
