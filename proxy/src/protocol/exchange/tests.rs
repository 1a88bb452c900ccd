//! The exchange against the one record of owed replies: statements, outcomes, pipelines.

use super::*;
use crate::protocol::error::PgError;
use crate::protocol::frame::message;

fn parse(name: &str, sql: &str) -> bytes::BytesMut {
    message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}
fn bind(portal: &str, stmt: &str) -> bytes::BytesMut {
    message(b'B', format!("{portal}\0{stmt}\0\0\0\0\0\0\0").as_bytes())
}
fn execute(portal: &str) -> bytes::BytesMut {
    message(b'E', format!("{portal}\0\0\0\0\0").as_bytes())
}

#[test]
fn execute_of_a_named_statement_finishes_with_its_sql_and_tag() {
    let mut x = Exchange::default();
    for m in [parse("s1", "SELECT 1"), message(b'S', b"")] {
        x.client_sent(&m, TextMode::Standard);
    }
    assert!(x.server_sent(&message(b'1', b"")).is_none());
    x.server_sent(&message(b'Z', b"I"));
    for m in [bind("", "s1"), execute(""), message(b'S', b"")] {
        x.client_sent(&m, TextMode::Standard);
    }
    x.server_sent(&message(b'2', b""));
    x.server_sent(&message(b'D', b"\0\x01\0\0\0\x011"));
    let done = x.server_sent(&message(b'C', b"SELECT 1\0")).unwrap();
    assert_eq!(&*done.statement.sql, "SELECT 1");
    assert_eq!(done.outcome, Outcome::Complete("SELECT 1".into()));
    x.server_sent(&message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
}

#[test]
fn error_mid_pipeline_skips_to_sync() {
    let mut x = Exchange::default();
    for m in [
        parse("", "SELECT 1/0"),
        bind("", ""),
        execute(""),
        parse("", "SELECT 2"),
        bind("", ""),
        execute(""),
        message(b'S', b""),
    ] {
        x.client_sent(&m, TextMode::Standard);
    }
    x.server_sent(&message(b'1', b""));
    x.server_sent(&message(b'2', b""));
    let err = PgError::error("22012", "division by zero").to_bytes();
    let done = x.server_sent(&err).unwrap();
    assert_eq!(
        done.outcome,
        Outcome::Error {
            sqlstate: "22012".into()
        }
    );
    assert!(matches!(x.current(), Some(Pending::Sync)));
    x.server_sent(&message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
}

#[test]
fn short_messages_do_not_panic() {
    let mut x = Exchange::default();
    for m in [&message(b'C', b"")[..], &message(b'F', b"")[..], b"", b"C"] {
        x.client_sent(m, TextMode::Standard);
    }
    for m in [&message(b'C', b"")[..], b"", b"C", b"Z"] {
        x.server_sent(m);
    }
}

#[test]
fn a_function_call_is_one_statement_and_its_error_skips_nothing() {
    let mut x = Exchange::default();
    let call = message(b'F', b"\0\0\x04\xd2\0\0\0\0\0\0");
    x.client_sent(&call, TextMode::Standard);
    let done = x.server_sent(&message(b'V', b"\xff\xff\xff\xff")).unwrap();
    assert_eq!(done.protocol, Protocol::FunctionCall);
    assert_eq!(&*done.statement.sql, "function 1234");
    x.server_sent(&message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
    x.client_sent(&call, TextMode::Standard);
    x.client_sent(&message(b'Q', b"SELECT 1\0"), TextMode::Standard);
    let err = PgError::error("42501", "permission denied").to_bytes();
    assert_eq!(
        x.server_sent(&err).unwrap().protocol,
        Protocol::FunctionCall
    );
    x.server_sent(&message(b'Z', b"I"));
    assert!(matches!(x.current(), Some(Pending::Query { .. })));
}

#[test]
fn a_refused_second_parse_of_a_name_leaves_its_text() {
    let mut x = Exchange::default();
    for m in [parse("s1", "INSERT INTO t VALUES ($1)"), message(b'S', b"")] {
        x.client_sent(&m, TextMode::Standard);
    }
    x.server_sent(&message(b'1', b""));
    x.server_sent(&message(b'Z', b"I"));
    for m in [
        parse("s1", "SELECT $1"),
        bind("", "s1"),
        execute(""),
        message(b'S', b""),
        bind("", "s1"),
        execute(""),
        message(b'S', b""),
    ] {
        x.client_sent(&m, TextMode::Standard);
    }
    let err = PgError::error("42P05", "prepared statement \"s1\" already exists").to_bytes();
    assert_eq!(&*x.server_sent(&err).unwrap().statement.sql, "SELECT $1");
    x.server_sent(&message(b'Z', b"I"));
    x.server_sent(&message(b'2', b""));
    let done = x.server_sent(&message(b'C', b"INSERT 0 1\0")).unwrap();
    // The Bind was sent before the error came back; what ran is what the server held.
    assert_eq!(&*done.statement.sql, "INSERT INTO t VALUES ($1)");
}

#[test]
fn a_told_record_of_owed_replies_is_read_and_survives_copy_in() {
    let replies = std::cell::RefCell::new(Replies::default());
    let mut x = Exchange::default();
    x.follow();
    // The record's owner (the statement path) updates it and tells the exchange its reading
    // before the exchange sees the message.
    let client = |x: &mut Exchange, m: &[u8]| {
        replies.borrow_mut().client_sent(m[0]);
        x.told(&replies.borrow());
        x.client_sent(m, TextMode::Standard);
    };
    let server = |x: &mut Exchange, m: &[u8]| {
        replies.borrow_mut().server_sent(m);
        x.told(&replies.borrow());
        x.server_sent(m)
    };
    // tokio-postgres copy_in: two Syncs, one ReadyForQuery.
    for m in [
        parse("", "COPY t FROM STDIN"),
        bind("", ""),
        execute(""),
        message(b'S', b""),
    ] {
        client(&mut x, &m);
    }
    server(&mut x, &message(b'1', b""));
    server(&mut x, &message(b'2', b""));
    server(&mut x, &message(b'G', b"\0\0\0"));
    for m in [
        message(b'd', b"1\n"),
        message(b'c', b""),
        message(b'S', b""),
    ] {
        client(&mut x, &m);
    }
    let copy = server(&mut x, &message(b'C', b"COPY 1\0")).unwrap();
    assert_eq!(&*copy.statement.sql, "COPY t FROM STDIN");
    server(&mut x, &message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
    // The next statement is tied to its own answer, not to a Sync left over.
    client(&mut x, &message(b'Q', b"SELECT 2\0"));
    let done = server(&mut x, &message(b'C', b"SELECT 1\0")).unwrap();
    assert_eq!(&*done.statement.sql, "SELECT 2");
    server(&mut x, &message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
}

#[test]
fn each_statement_of_a_simple_query_finishes() {
    let mut x = Exchange::default();
    x.client_sent(&message(b'Q', b"SELECT 1; SELECT 2\0"), TextMode::Standard);
    assert!(x.server_sent(&message(b'C', b"SELECT 1\0")).is_some());
    assert!(x.server_sent(&message(b'C', b"SELECT 1\0")).is_some());
    x.server_sent(&message(b'Z', b"I"));
    assert_eq!(x.in_flight(), 0);
}
