//! The wire format's readers and writers, tested on framed messages.

use super::*;

#[test]
fn a_data_row_written_value_by_value_is_the_one_written_whole() {
    let values = [
        Some(b"42".to_vec()),
        None,
        Some(Vec::new()),
        Some(vec![0; 300]),
    ];
    let whole = write_data_row(&values);
    let read = data_row_values(&whole).unwrap();
    assert_eq!(read.len(), 4);
    let mut row = DataRowWriter::new(read.len(), 0);
    for v in &read {
        row.value(*v);
    }
    assert_eq!(row.finish(), whole);
    // Truncated or padded rows are malformed, as before.
    assert!(data_row_values(&whole[..whole.len() - 1]).is_err());
    let mut padded = whole.to_vec();
    padded.push(0);
    assert!(data_row_values(&padded).is_err());
}

#[test]
fn bind_round_trips_and_expands_formats() {
    let bind = Bind {
        portal: "p".into(),
        statement: "s".into(),
        param_formats: vec![1],
        params: vec![Some(b"\x00\x00\x00\x07".to_vec()), None],
        result_formats: vec![1],
    };
    let written = bind.write();
    // Byte for byte what PostgreSQL reads, length included.
    let expected: &[u8] =
        b"B\0\0\0\x1ep\0s\0\0\x01\0\x01\0\x02\0\0\0\x04\0\0\0\x07\xff\xff\xff\xff\0\x01\0\x01";
    assert_eq!(&written[..], expected);
    let mut again = Bind::read(&written).unwrap();
    assert_eq!(again, bind);
    again.expand_param_formats();
    assert_eq!(again.param_formats, vec![1, 1]);
    assert_eq!(again.param_format(1), Format::Binary);
}

#[test]
fn parse_row_description_and_data_row_round_trip() {
    let p = Parse {
        name: "".into(),
        query: b"SELECT $1".to_vec(),
        param_types: vec![25],
    };
    assert_eq!(Parse::read(&p.write()).unwrap(), p);
    let fields = vec![Field {
        name: b"email".to_vec(),
        table_oid: 16384,
        attnum: 2,
        type_oid: 17,
        type_len: -1,
        type_mod: -1,
        format: 0,
    }];
    assert_eq!(
        read_row_description(&write_row_description(&fields)).unwrap(),
        fields
    );
    let row = vec![Some(b"abc".to_vec()), None, Some(vec![])];
    assert_eq!(read_data_row(&write_data_row(&row)).unwrap(), row);
    assert_eq!(
        read_parameter_description(&write_parameter_description(&[25, 17])).unwrap(),
        vec![25, 17]
    );
}

#[test]
fn counts_are_unsigned_and_must_match_the_body() {
    // 32768 declared parameter types: a valid count (PostgreSQL reads it unsigned), but
    // the types are missing here.
    let mut body = b"s\0select 1\0".to_vec();
    body.extend_from_slice(&0x8000u16.to_be_bytes());
    let short = message(b'P', &body);
    assert_eq!(Parse::read(&short), Err(Unreadable::Malformed("Parse")));
    body.extend(std::iter::repeat_n(0u8, 4 * 0x8000));
    assert_eq!(
        Parse::read(&message(b'P', &body))
            .unwrap()
            .param_types
            .len(),
        0x8000
    );
    // Trailing bytes after the last field.
    let mut extra = Parse {
        name: "".into(),
        query: b"select 1".to_vec(),
        param_types: vec![],
    }
    .write()
    .to_vec();
    extra.push(7);
    let len = (extra.len() - 1) as u32;
    extra[1..5].copy_from_slice(&len.to_be_bytes());
    assert!(Parse::read(&extra).is_err());
}

#[test]
fn names_must_be_utf8_and_targets_known() {
    assert_eq!(
        Parse::read(&message(b'P', b"\xff\0select 1\0\0\0")),
        Err(Unreadable::NotUtf8("Parse"))
    );
    // The query itself may be in another encoding: it stays bytes.
    assert!(Parse::read(&message(b'P', b"\0select '\xe9'\0\0\0")).is_ok());
    assert_eq!(
        read_target(&message(b'C', b"Ss1\0"), "Close"),
        Ok((Target::Statement, "s1".into()))
    );
    for short in [&b""[..], b"S", b"X\0", b"Ps1"] {
        assert!(read_target(&message(b'C', short), "Close").is_err());
    }
    assert_eq!(read_execute(&message(b'E', b"p\0\0\0\0\0")), Ok("p".into()));
    assert!(read_execute(&message(b'E', b"p\0")).is_err());
    assert!(read_target(b"C", "Close").is_err());
}

#[test]
fn column_names_in_another_client_encoding_are_kept_as_bytes() {
    // `select 'x' as "€", 1 as "é"` under client_encoding LATIN9: 0xA4 and 0xE9.
    let mut body = 2u16.to_be_bytes().to_vec();
    for name in [&b"\xa4"[..], b"\xe9"] {
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff]);
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0]);
    }
    let frame = message(b'T', &body);
    let fields = read_row_description(&frame).unwrap();
    assert_eq!(fields[0].name, b"\xa4");
    assert_eq!(fields[1].name, b"\xe9");
    assert_eq!(write_row_description(&fields), frame);
    // A name still needs its terminator.
    let cut = message(b'T', &body[..3]);
    assert_eq!(
        read_row_description(&cut),
        Err(Unreadable::Malformed("RowDescription"))
    );
}

#[test]
fn truncated_messages_are_malformed_not_panics() {
    let full = write_data_row(&[Some(b"abcdef".to_vec())]);
    for cut in 5..full.len() {
        let mut truncated = full[..cut].to_vec();
        let len = (truncated.len() - 1) as u32;
        truncated[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(read_data_row(&truncated).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_bind_read_in_place_agrees_with_the_copy_and_refuses_the_same_messages() {
    let bind = Bind {
        portal: "p".into(),
        statement: "s1".into(),
        param_formats: vec![1, 0],
        params: vec![Some(b"\x00\x01".to_vec()), None],
        result_formats: vec![1],
    };
    let frame = bind.write();
    let view = BindView::read(&frame).expect("view");
    assert_eq!((view.portal, view.statement), ("p", "s1"));
    assert_eq!(view.result_formats(), vec![1]);
    // Every cut, every extra byte and a name not UTF-8: refused alike.
    for cut in 5..frame.len() {
        let mut short = frame[..cut].to_vec();
        let len = (short.len() - 1) as u32;
        short[1..5].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            BindView::read(&short).err(),
            Bind::read(&short).err(),
            "cut at {cut}"
        );
        assert!(BindView::read(&short).is_err(), "cut at {cut}");
    }
    let mut long = frame.to_vec();
    long.push(0);
    assert!(BindView::read(&long).is_err() && Bind::read(&long).is_err());
    let bad = message(b'B', b"\xff\0s\0\0\0\0\0\0\0");
    assert_eq!(BindView::read(&bad), Err(Unreadable::NotUtf8("Bind")));
    assert_eq!(Bind::read(&bad), Err(Unreadable::NotUtf8("Bind")));
}
