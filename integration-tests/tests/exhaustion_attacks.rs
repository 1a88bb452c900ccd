//! Inputs built to exhaust the proxy's stack, memory or time, sent as the non-superuser
//! application role. A stack overflow aborts the whole process (every session), so each test
//! first of all proves the proxy is still up afterwards; where pgshroud must refuse, it answers
//! with an ErrorResponse as PostgreSQL would (54000, 54001, 53200) and the session lives on.

use pgshroud_integration_tests::protected::{code, rows, Fixture};

/// The session still answers, and the proxy still accepts new sessions.
async fn still_up(f: &Fixture, c: &tokio_postgres::Client) {
    let r = c.simple_query("SELECT 41 + 1").await.expect("same session");
    assert_eq!(rows(&r), vec![vec![Some("42".to_string())]]);
    let fresh = f.app().await;
    fresh.simple_query("SELECT 1").await.expect("new session");
}

/// A statement on a protected table nesting just under the analysis' bound (so it is analysed,
/// not refused) whose sealed literal sits where a template may be derived for its shape:
/// deriving the template read the parse tree as JSON, recursively, on the session thread's
/// 2 MiB stack, and `|| 'b'` nine hundred times aborted the whole proxy ("thread
/// 'pgshroud-session-0' has overflowed its stack"). Fixed: the reading runs on the stack sized
/// for the text (`sql_limits::pg::parse_with`).
#[tokio::test]
async fn a_statement_just_under_the_nesting_bound_is_planned_without_overflowing() {
    let f = Fixture::new().await;
    let c = f.app().await;
    for n in [500, 900, 990] {
        let sql = format!(
            "SELECT id FROM customers WHERE email = 'x' AND name = 'a'{}",
            " || 'b'".repeat(n)
        );
        let r = c.simple_query(&sql).await.expect("analysed and answered");
        assert!(rows(&r).is_empty(), "n = {n}");
        // The same shape again, now from the template.
        let again = sql.replace("email = 'x'", "email = 'y'");
        c.simple_query(&again).await.expect("answered from the shape");
        still_up(&f, &c).await;
    }
}

/// The check of SQL texts handed to server functions (`query_to_xml`, ...) reads the parse
/// tree's serde form recursively; for roles that may not see stored values it runs on every
/// text naming such a function, protected table or not. Just under the nesting bound it
/// overflowed the session thread's stack. Every role, and the proxy lives on.
#[tokio::test]
async fn sql_text_calls_just_under_the_nesting_bound_leave_the_proxy_up() {
    let f = pgshroud_integration_tests::roles::RolesFixture::new().await;
    let chain = " || 'b'".repeat(985);
    let sql = format!("SELECT query_to_xml('SELECT 1', true, false, '') WHERE 'a'{chain} <> ''");
    for suffix in ["app", "auditor", "analyst", "dba"] {
        let c = f.connect(suffix).await;
        // Answered or refused: either way the session and the proxy stand.
        let _ = c.simple_query(&sql).await;
        let _ = c.query(sql.as_str(), &[]).await;
        c.simple_query("SELECT 1").await.expect("same session");
        f.connect(suffix)
            .await
            .simple_query("SELECT 1")
            .await
            .expect("new session");
    }
}
