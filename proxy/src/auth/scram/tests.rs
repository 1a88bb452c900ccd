use super::*;

/// RFC 7677's test vector: user "user", password "pencil".
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST_BARE: &str = "n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_FINAL_WITHOUT_PROOF: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_PROOF: &str = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_SIGNATURE: &str = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_verifier() -> Verifier {
    Verifier::from_password(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096)
}

fn rfc_auth_message() -> String {
    format!("{RFC_CLIENT_FIRST_BARE},{RFC_SERVER_FIRST},{RFC_FINAL_WITHOUT_PROOF}")
}

#[test]
fn rfc7677_proof_reveals_the_client_key_and_reproduces() {
    let verifier = rfc_verifier();
    let proof: [u8; 32] = B64.decode(RFC_PROOF).unwrap().try_into().unwrap();
    let auth = rfc_auth_message();
    let key = verifier
        .check_proof(auth.as_bytes(), &proof)
        .expect("right proof");
    assert_eq!(key.proof(auth.as_bytes()), proof);
    assert_eq!(
        B64.encode(verifier.server_signature(auth.as_bytes())),
        RFC_SERVER_SIGNATURE
    );
    let mut wrong = proof;
    wrong[0] ^= 1;
    assert!(verifier.check_proof(auth.as_bytes(), &wrong).is_none());
}

#[test]
fn verifier_text_round_trips_the_postgresql_format() {
    let v = rfc_verifier();
    let text = format!(
        "SCRAM-SHA-256$4096:{RFC_SALT}${}:{}",
        B64.encode(v.stored_key),
        B64.encode(v.server_key)
    );
    let parsed = Verifier::parse(&text).unwrap();
    assert_eq!(parsed.stored_key, v.stored_key);
    assert_eq!(parsed.iterations, 4096);
    assert!(Verifier::parse("md5a3556571e93b0d20722ba62be61e8c2d").is_none());
    assert!(Verifier::parse("SCRAM-SHA-256$0:c2FsdA==$a:b").is_none());
    assert!(!format!("{parsed:?}").contains(&B64.encode(v.stored_key)));
}

#[test]
fn cleartext_password_is_checked_against_the_verifier() {
    let v = rfc_verifier();
    assert!(v.check_password(b"pencil").is_some());
    assert!(v.check_password(b"pencil2").is_none());
}

/// The whole pass-through: a client proves itself to the proxy, the proxy proves itself to
/// a server holding the same verifier, and each side's signature checks.
#[test]
fn pass_through_login_verifies_on_both_legs() {
    let verifier = Verifier::from_password(b"secret", b"0123456789abcdef", 4096);
    let cert_hash = vec![7u8; 32];
    // Client -> proxy, with channel binding to the proxy's certificate.
    let client_nonce = nonce();
    let client_first = format!("p=tls-server-end-point,,n=,r={client_nonce}");
    let (server, server_first) = ServerExchange::start(
        MECHANISM_PLUS,
        client_first.as_bytes(),
        Some(&cert_hash),
        &verifier,
    )
    .unwrap();
    let mut binding = b"p=tls-server-end-point,,".to_vec();
    binding.extend_from_slice(&cert_hash);
    let combined = server_first.split(',').next().unwrap();
    let without_proof = format!("c={},{combined}", B64.encode(&binding));
    let auth = format!("n=,r={client_nonce},{server_first},{without_proof}");
    let client_key_of_user = Verifier::from_password(b"secret", b"0123456789abcdef", 4096)
        .check_password(b"secret")
        .unwrap();
    let proof = client_key_of_user.proof(auth.as_bytes());
    let client_final = format!("{without_proof},p={}", B64.encode(proof));
    let (key, server_final) = server
        .finish(client_final.as_bytes(), &verifier)
        .unwrap()
        .expect("right proof");
    check_server_final(server_final.as_bytes(), &verifier, &auth).unwrap();

    // Proxy -> server, with channel binding to the server's certificate.
    let (upstream, mechanism, first) =
        ClientExchange::start(UpstreamBinding::EndPoint(vec![9u8; 32]));
    assert_eq!(mechanism, MECHANISM_PLUS);
    let (pg, pg_first) =
        ServerExchange::start(mechanism, first.as_bytes(), Some(&[9u8; 32]), &verifier).unwrap();
    let (final_message, auth_message) = upstream
        .answer(pg_first.as_bytes(), &key, &verifier)
        .unwrap()
        .unwrap();
    let (_, pg_final) = pg
        .finish(final_message.as_bytes(), &verifier)
        .unwrap()
        .expect("the server accepts the recovered key");
    check_server_final(pg_final.as_bytes(), &verifier, &auth_message).unwrap();
    assert_eq!(
        check_server_final(
            b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            &verifier,
            &auth_message
        ),
        Err(ScramError::ServerSignature)
    );
}

#[test]
fn a_changed_salt_upstream_is_reported_as_stale() {
    let verifier = Verifier::from_password(b"secret", b"salt-one", 4096);
    let newer = Verifier::from_password(b"secret", b"salt-two", 4096);
    let key = verifier.check_password(b"secret").unwrap();
    let (upstream, mechanism, first) = ClientExchange::start(UpstreamBinding::None);
    let (_, pg_first) = ServerExchange::start(mechanism, first.as_bytes(), None, &newer).unwrap();
    assert!(upstream
        .answer(pg_first.as_bytes(), &key, &verifier)
        .unwrap()
        .is_none());
}

#[test]
fn channel_binding_downgrades_and_mismatches_are_refused() {
    let v = rfc_verifier();
    let hash = [1u8; 32];
    // "y" over TLS where PLUS was offered: the client was told PLUS is not available.
    assert_eq!(
        ServerExchange::start(MECHANISM, b"y,,n=,r=abc", Some(&hash), &v).unwrap_err(),
        ScramError::BindingNegotiation
    );
    assert!(ServerExchange::start(MECHANISM, b"y,,n=,r=abc", None, &v).is_ok());
    assert_eq!(
        ServerExchange::start(MECHANISM_PLUS, b"n,,n=,r=abc", Some(&hash), &v).unwrap_err(),
        ScramError::BindingNegotiation
    );
    assert!(matches!(
        ServerExchange::start(MECHANISM, b"n,a=admin,n=,r=abc", None, &v).unwrap_err(),
        ScramError::Malformed(_)
    ));
    // Binding data of another certificate (a TLS hop in between) fails the check.
    let (server, first) = ServerExchange::start(
        MECHANISM_PLUS,
        b"p=tls-server-end-point,,n=,r=abc",
        Some(&hash),
        &v,
    )
    .unwrap();
    let nonce = first.split(',').next().unwrap();
    let mut other = b"p=tls-server-end-point,,".to_vec();
    other.extend_from_slice(&[2u8; 32]);
    let final_message = format!(
        "c={},{nonce},p={}",
        B64.encode(other),
        B64.encode([0u8; 32])
    );
    assert_eq!(
        server.finish(final_message.as_bytes(), &v).unwrap_err(),
        ScramError::BindingCheck
    );
}

#[test]
fn mock_verifier_is_stable_per_user_and_matches_no_proof() {
    let secret = [3u8; 32];
    let a = Verifier::mock("ghost", &secret);
    assert_eq!(a.salt, Verifier::mock("ghost", &secret).salt);
    assert_ne!(a.salt, Verifier::mock("other", &secret).salt);
    assert!(a.check_password(b"").is_none());
}
