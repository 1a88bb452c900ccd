//! One client connection from accept to close: handshake, authentication (relayed to
//! PostgreSQL, or checked by the proxy before the upstream connection opens), then the relay
//! until either side ends it.

pub mod auth;
pub mod auth_error;
pub mod cancel;
pub mod cancel_key;
mod ending;
pub mod handshake;
pub mod identity;
pub mod login;
pub mod outgoing;
pub mod pass_through;
pub mod relay;
pub mod statement_path;
pub mod woken;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::startup::NegotiateProtocolVersion;
use pgwire::messages::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, warn, Instrument};

use self::auth::AuthExchange;
use self::auth_error::AuthError;
use self::ending::{count_end, finish};
use self::handshake::{send_and_close, Handshake, HandshakeError};
use self::identity::IdentitySettings;
use self::pass_through::PassThrough;
use self::relay::{Inbound, RelayEnd, ServerPath, MAX_SERVER_MESSAGE};
use crate::audit::{ConnectionAudit, ConnectionInfo};
use crate::config::ClientCertMode;
use crate::context::shutdown::{stage_reached, Stage};
use crate::context::ProxyContext;
use crate::net::stream::Stream;
use crate::ops::metrics::{AlertKind, ConnectionErrorReason as Why};
use crate::protect::catalog;
use crate::protect::policy::{Caller, Policy};
use crate::protect::session::ProtectedSession;
use crate::protocol::error::{sqlstate, PgError};
use crate::protocol::frame::FrameBuffer;
use crate::protocol::startup::{Replication, StartupMessage};
use crate::protocol::text_settings::TextSettings;
use crate::session::cancel::{forward_cancel, CancelRoute, CANCEL_WAIT};
use crate::session::statement_path::StatementPath;
use crate::session::woken::WhenWoken;

/// Whether the connection limit let this client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the limit: the client is told `53300` once its startup packet arrives.
    OverLimit,
}

/// Serves one client connection to the end. Never panics on bad input; every failure is
/// logged with the reason and ends only this connection.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, ctx: Arc<ProxyContext>, admission: Admission) {
    let _ = tcp.set_nodelay(true);
    let _connection = ctx.metrics.track_connection();
    let limits = &ctx.settings.limits;
    let handshake = match tokio::time::timeout(
        limits.startup_timeout,
        // Boxed (here and for login and the catalog look-up): a future is as large as its
        // largest state, and these states are over once the relay runs; inline, they would
        // size every idle session's task.
        Box::pin(handshake::negotiate(tcp, ctx.tls.as_ref())),
    )
    .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(HandshakeError::Startup(e))) => {
            debug!(%peer, "connection closed during startup: {e}");
            ctx.metrics.connection_error(Why::InvalidStartup);
            return;
        }
        Ok(Err(e)) => {
            info!(%peer, "connection refused during startup: {e}");
            let why = match e {
                HandshakeError::Tls(_) => Why::Tls,
                _ => Why::InvalidStartup,
            };
            ctx.metrics.connection_error(why);
            return;
        }
        Err(_) => {
            info!(%peer, "client did not finish its startup packet in time");
            ctx.metrics.connection_error(Why::StartupTimeout);
            return;
        }
    };
    match handshake {
        Handshake::Cancel {
            mut client,
            pid,
            secret,
        } => {
            Box::pin(cancel(&ctx, pid, &secret)).await;
            let _ = client.shutdown().await;
        }
        Handshake::Session {
            mut client,
            startup,
        } => {
            if admission == Admission::OverLimit {
                info!(%peer, "refused: max_client_connections reached");
                ctx.metrics.connection_error(Why::TooManyConnections);
                send_and_close(&mut client, &PgError::too_many_clients()).await;
                return;
            }
            // Borrowed for the span only: copies would be held by every idle session.
            let span = {
                let user = startup.user().unwrap_or_default();
                let database = startup.database().unwrap_or_default();
                tracing::info_span!("session", %peer, %user, %database)
            };
            let audit = AuditGuard::connect(&ctx, peer, &client, &startup);
            run_session(client, startup, peer, &ctx, &audit)
                .instrument(span)
                .await;
        }
    }
}

/// Forwards a CancelRequest; returns once the server has taken it (or would not).
async fn cancel(ctx: &ProxyContext, pid: i32, secret: &[u8]) {
    let (key, whose) = match ctx.cancels.route(pid, secret) {
        CancelRoute::Local(key) => (key, "this instance's"),
        CancelRoute::Foreign(key) => (key, "another instance's"),
        CancelRoute::Ignored => {
            debug!(pid, "cancel request for an unknown key ignored");
            return;
        }
    };
    if let Err(e) = forward_cancel(&ctx.upstream, &key, CANCEL_WAIT).await {
        warn!("could not forward cancel request upstream: {e}");
    } else {
        debug!(pid, "cancel request for {whose} session forwarded");
    }
}

/// The connection's audit, when audit is on; `disconnect` is written however the session ends.
struct AuditGuard(Option<Arc<std::sync::Mutex<ConnectionAudit>>>);

impl AuditGuard {
    fn connect(
        ctx: &ProxyContext,
        peer: SocketAddr,
        client: &Stream,
        startup: &StartupMessage,
    ) -> AuditGuard {
        let Some(audit) = &ctx.audit else {
            return AuditGuard(None);
        };
        let info = ConnectionInfo {
            session: ConnectionInfo::new_session_id(),
            client_addr: Some(peer.ip()),
            tls: client.is_tls(),
            user: startup.user().unwrap_or_default().to_owned(),
            database: startup.database().unwrap_or_default().to_owned(),
            application_name: startup.params.get("application_name").cloned(),
            role: None,
        };
        let connection = ConnectionAudit::connect(audit.clone(), info);
        AuditGuard(Some(Arc::new(std::sync::Mutex::new(connection))))
    }

    fn with(&self, f: impl FnOnce(&mut ConnectionAudit)) {
        if let Some(Ok(mut a)) = self.0.as_ref().map(|a| a.lock()) {
            f(&mut a);
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.with(ConnectionAudit::disconnect);
    }
}

/// A session logged in and set up, ready to relay.
struct Opened {
    client: Stream,
    client_buf: FrameBuffer,
    server: Stream,
    server_buf: FrameBuffer,
    statements: StatementPath,
    /// This session's entry in the cancel registry, removed when the session ends.
    _cancel_key: Option<crate::session::cancel::CancelGuard>,
}

async fn run_session(
    client: Stream,
    startup: StartupMessage,
    peer: SocketAddr,
    ctx: &Arc<ProxyContext>,
    audit: &AuditGuard,
) {
    // Boxed, and over before the relay starts: a future keeps every local that lives across
    // more than one of its awaits in a slot of its own for its whole life, so the login's
    // locals (startup parameters, both streams and buffers before they move, the identity
    // settings) held inline here sized every idle session's task (~2 KiB; issue 25).
    let Some(opened) = Box::pin(open_session(client, startup, peer, ctx, audit)).await else {
        return;
    };
    let Opened {
        client,
        client_buf,
        server,
        server_buf,
        statements,
        _cancel_key,
    } = opened;
    let end = relay(client, client_buf, server, server_buf, statements, ctx).await;
    info!(reason = ?end, "session ended");
}

/// Login and set-up: `None` when the session ended there (the client was told why).
async fn open_session(
    mut client: Stream,
    startup: StartupMessage,
    peer: SocketAddr,
    ctx: &Arc<ProxyContext>,
    audit: &AuditGuard,
) -> Option<Opened> {
    let limits = &ctx.settings.limits;
    let mut client_buf = FrameBuffer::new(limits.max_message_size);
    let mut server_buf = FrameBuffer::new(MAX_SERVER_MESSAGE);
    let user = startup.user().unwrap_or_default();
    let refused = handshake::require_tls(&client, &startup, ctx.settings.client_tls.as_ref())
        .map_err(|e| (e, Why::Tls))
        .and_then(|()| {
            handshake::check_replication(&startup, &ctx.settings.replication_users)
                .map_err(|e| (e, Why::AuthFailed))
        })
        .and_then(|()| identity::check_client_startup(&startup).map_err(|e| (e, Why::AuthFailed)));
    if let Err((error, why)) = refused {
        info!("refused: {error}");
        audit.with(|a| a.auth_failed(Some(error.code)));
        ctx.metrics.connection_error(why);
        send_and_close(&mut client, &error).await;
        return None;
    }

    // The identity settings travel as startup parameters of the upstream connection (see
    // `identity`); a replication connection runs no policies and gets none.
    let cert_subject = client.peer_cert_subject();
    let identity = match (&ctx.protection, startup.replication()) {
        (Some(live), Replication::No) => Some(IdentitySettings::for_caller(
            &live.current().rules,
            &pgshroud_rules::Identity {
                user,
                pg_roles: &[],
                cert_subject: cert_subject.as_deref(),
            },
        )),
        _ => None,
    };
    let upstream_startup = match &identity {
        Some(identity) => identity.upstream_startup(&startup),
        None => startup.clone(),
    };
    let login = async {
        negotiate_version(&mut client, &startup).await?;
        let cert_required = ctx
            .settings
            .client_tls
            .as_ref()
            .is_some_and(|tls| tls.client_cert == ClientCertMode::VerifyFull);
        if cert_required {
            login::check_client_cert(&mut client, user).await?;
        }
        // Proxy-side authentication checks the client before any upstream connection opens.
        let pass_through = match &ctx.auth {
            Some(proxy_auth) => {
                let proven =
                    login::authenticate(&mut client, &mut client_buf, user, proxy_auth).await?;
                Some(PassThrough::new(proven, user))
            }
            None => None,
        };
        let mut server = ctx.upstream.connect().await?;
        server.write_all(&upstream_startup.encode_v3()).await?;
        server.flush().await?;
        let authenticated = AuthExchange {
            client: &mut client,
            client_buf: &mut client_buf,
            server: &mut server,
            server_buf: &mut server_buf,
            pass_through,
        }
        .run(&ctx.cancels)
        .await?;
        Ok::<_, AuthError>((authenticated, server))
    };
    let (authenticated, mut server) =
        match tokio::time::timeout(limits.startup_timeout, Box::pin(login)).await {
            Ok(Ok(a)) => a,
            Ok(Err(AuthError::Connect(e))) => {
                warn!("upstream connection failed: {e}");
                ctx.metrics.upstream_error();
                ctx.metrics.connection_error(Why::UpstreamConnect);
                send_and_close(&mut client, &PgError::upstream_unreachable(&e.to_string())).await;
                return None;
            }
            Ok(Err(e)) => {
                log_auth_failure(&e);
                audit.with(|a| match &e {
                    AuthError::Refused { sqlstate, .. } => a.auth_failed(Some(sqlstate)),
                    AuthError::Denied(error) => a.auth_failed(Some(error.code)),
                    _ => a.auth_failed(None),
                });
                ctx.metrics.connection_error(match e {
                    AuthError::Upstream(_) | AuthError::UpstreamGone => Why::UpstreamConnect,
                    AuthError::ClientGone | AuthError::Io(_) => Why::Io,
                    AuthError::Client(_) | AuthError::ClientProtocol(_) => Why::Protocol,
                    _ => Why::AuthFailed,
                });
                if let AuthError::Upstream(_) | AuthError::UpstreamGone = e {
                    send_and_close(&mut client, &PgError::upstream_lost(&e.to_string())).await;
                }
                let _ = client.shutdown().await;
                return None;
            }
            Err(_) => {
                audit.with(|a| a.auth_failed(Some(sqlstate::CONNECTION_EXCEPTION)));
                ctx.metrics.connection_error(Why::StartupTimeout);
                let error = PgError::fatal(
                    sqlstate::CONNECTION_EXCEPTION,
                    "authentication did not complete within startup_timeout_secs",
                );
                info!("{error}");
                send_and_close(&mut client, &error).await;
                return None;
            }
        };
    info!("session started");
    audit.with(ConnectionAudit::auth_ok);
    let _cancel_key = authenticated.cancel;
    let caller = Caller {
        user: startup.user().unwrap_or_default().to_owned(),
        pg_roles: Vec::new(),
        cert_subject,
        addr: peer.ip(),
    };
    // A replication connection (of a user in `replication_users`) is relayed as is: a physical
    // walsender runs no SQL, so there is no catalog to look up, and its stream is raw anyway.
    let path = if startup.replication() == Replication::No {
        Box::pin(statement_path(
            ctx,
            caller,
            identity.as_ref(),
            audit,
            &mut server,
            &mut server_buf,
        ))
        .await
    } else {
        info!("replication connection relayed (replication_users)");
        Ok(StatementPath::passthrough())
    };
    let statements = match path {
        Ok(path) => path
            .with_audit(audit.0.clone())
            .with_metrics(ctx.metrics.clone())
            .with_text_settings(TextSettings::from_parameters(&authenticated.parameters)),
        Err(error) => {
            warn!("{error}");
            send_and_close(&mut client, &error).await;
            return None;
        }
    };
    if client.write_all(&authenticated.ready).await.is_err() || client.flush().await.is_err() {
        return None;
    }
    // What the login left (startup parameters, the ParameterStatus list, the held
    // ReadyForQuery sharing the login's read buffer) is dropped with this future.
    Some(Opened {
        client,
        client_buf,
        server,
        server_buf,
        statements,
        _cancel_key,
    })
}

/// The session's statement path: pass-through, or protected with this database's catalog
/// of the protected tables (looked up on the session's own connection).
async fn statement_path(
    ctx: &ProxyContext,
    mut caller: Caller,
    identity: Option<&IdentitySettings>,
    audit: &AuditGuard,
    server: &mut Stream,
    server_buf: &mut FrameBuffer,
) -> Result<StatementPath, PgError> {
    let Some(live) = &ctx.protection else {
        return Ok(StatementPath::passthrough());
    };
    let protection = live.current();
    let lost = |e: catalog::CatalogError| PgError::upstream_lost(&e.to_string());
    if protection.rules.needs_pg_roles() {
        caller.pg_roles = catalog::fetch_pg_roles(server, server_buf)
            .await
            .map_err(lost)?;
    }
    let policy = Policy::for_caller(&protection.rules, &caller);
    // The audit raises the network alert (event and metric) itself when it is on.
    audit.with(|a| a.role_matched(policy.role()));
    if let Err(refused) = policy.check_network(caller.addr) {
        if audit.0.is_none() {
            ctx.metrics.alert(AlertKind::Network);
        }
        ctx.metrics.connection_error(Why::NetworkDenied);
        return Err(refused);
    }
    info!(role = %policy.role().name, "caller matched a role");
    let catalog = catalog::fetch(server, server_buf, protection.tables())
        .await
        .map_err(lost)?;
    protection.report_problems(&catalog, &ctx.metrics);
    let mut session = ProtectedSession::new(live.clone(), caller, catalog, ctx.metrics.clone());
    if let Some(identity) = identity {
        let tenant = Some(identity.tenant.clone()).filter(|t| !t.is_empty());
        session.set_startup_tenant(tenant);
    }
    // The role depends on PostgreSQL role memberships, looked up only now: set it for the
    // session (RESET ALL and DISCARD ALL would then put back the startup guess: refused).
    let role = &policy.role().name;
    if identity.is_some_and(|i| i.role != *role) {
        let sql = identity::set_role_statement(role).ok_or_else(|| {
            PgError::fatal(
                sqlstate::CONNECTION_EXCEPTION,
                "the role's name cannot be a setting value",
            )
        })?;
        catalog::query_rows(server, server_buf, &sql)
            .await
            .map_err(lost)?;
        session.refuse_identity_resets();
    }
    Ok(StatementPath::protected(session))
}

/// Answers a client that asked for a newer minor version or `_pq_` options the way
/// PostgreSQL does: NegotiateProtocolVersion naming 3.0 and the options not supported.
async fn negotiate_version(client: &mut Stream, startup: &StartupMessage) -> Result<(), AuthError> {
    let options = startup.protocol_options();
    if startup.version.minor == 0 && options.is_empty() {
        return Ok(());
    }
    let mut buf = BytesMut::new();
    NegotiateProtocolVersion::new(0, options)
        .encode(&mut buf)
        .map_err(|_| AuthError::UpstreamProtocol)?;
    client.write_all(&buf).await?;
    Ok(())
}

fn log_auth_failure(e: &AuthError) {
    match e {
        AuthError::Refused { sqlstate, .. } => info!(%sqlstate, "login refused by the server"),
        AuthError::Denied(error) => info!(sqlstate = %error.code, "login refused by pgshroud"),
        AuthError::ClientGone => debug!("client left during authentication"),
        other => warn!("authentication failed: {other}"),
    }
}

async fn relay(
    client: Stream,
    client_buf: FrameBuffer,
    server: Stream,
    server_buf: FrameBuffer,
    statements: StatementPath,
    ctx: &Arc<ProxyContext>,
) -> RelayEnd {
    let (client_rd, mut client_wr) = client.split();
    let (server_rd, mut server_wr) = server.split();
    let mut server_path = ServerPath::default();
    // Set once shutdown drains: the server pump then ends the session at its next idle point
    // outside a transaction (here if it is at one already).
    let draining = AtomicBool::new(false);
    let end = {
        let to_server = relay::client_to_server(
            Inbound {
                rd: client_rd,
                buf: client_buf,
            },
            &mut server_wr,
            &statements,
            ctx.settings.limits.idle_timeout,
            &ctx.metrics,
        );
        let to_client = relay::server_to_client(
            Inbound {
                rd: server_rd,
                buf: server_buf,
            },
            &mut client_wr,
            &mut server_path,
            &statements,
            &draining,
            &ctx.metrics,
        );
        tokio::pin!(to_server, to_client);
        // Each branch is polled only when its own waker fired, not on every wake of this
        // task (see `woken`): a read of one socket leaves the other direction alone.
        let mut to_server = WhenWoken::new(to_server);
        let mut to_client = WhenWoken::new(to_client);
        let mut shutdown = WhenWoken::new(stage_reached(ctx.shutdown.clone(), Stage::Draining));
        loop {
            tokio::select! {
                end = &mut to_server => break end,
                end = &mut to_client => break end,
                stage = &mut shutdown => {
                    if stage >= Stage::Forced {
                        break RelayEnd::Shutdown;
                    }
                    draining.store(true, Ordering::Relaxed);
                    if statements.idle_outside_transaction() {
                        break RelayEnd::Shutdown;
                    }
                    shutdown = WhenWoken::new(stage_reached(ctx.shutdown.clone(), Stage::Forced));
                }
            }
        }
    };
    // Counted before the client hears of it: a client that reads the metrics once its
    // connection closes must find its own ending there.
    count_end(&ctx.metrics, &end);
    // Boxed: its timers would otherwise size every idle session's task.
    Box::pin(finish(&end, &mut client_wr, &mut server_wr)).await;
    end
}
