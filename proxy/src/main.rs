//! The `pgshroud` binary: parses the command line, loads settings, runs the chosen command.

use std::process::ExitCode;

use clap::Parser;
use pgshroud::cli::args::{
    AuditCommand, CheckArgs, Cli, Command, KeysCommand, ServeArgs, TenantsCommand,
};
use pgshroud::config::{ConfigLayer, Settings};
use pgshroud::context::shutdown::Stage;
use pgshroud::server::RunningProxy;
use tracing::info;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Keygen(args) => match &args.kms_key_id {
            None => keygen(),
            Some(_) => report(pgshroud::cli::keygen::kms_entry(&args)),
        },
        Command::Encrypt(args) => report(pgshroud::cli::operator::encrypt(&args)),
        Command::Decrypt(args) => report(pgshroud::cli::operator::decrypt(&args)),
        Command::Check(args) => check(&args),
        Command::Setup(args) => {
            database_command(|| pgshroud::cli::setup::setup(&args.upstream_url, &args.rules))
        }
        Command::Demo(args) => demo(&args.listen),
        Command::Keys(KeysCommand::Status(args)) => database_command(|| {
            pgshroud::cli::keys::status_with_tenants(
                &args.upstream_url,
                &args.rules,
                args.metrics_textfile.as_deref(),
                args.tenant_keys_dir.as_deref(),
            )
        }),
        Command::Keys(KeysCommand::Retire(args)) => database_command(|| {
            pgshroud::cli::keys::retire(&args.status.upstream_url, &args.status.rules, args.version)
        }),
        Command::Rotate(args) => database_command(|| pgshroud::cli::rotate::run(&args)),
        Command::Migrate(args) => database_command(|| pgshroud::cli::migrate::run(&args)),
        Command::Tenants(TenantsCommand::Add { keys, id }) => {
            report(pgshroud::cli::tenants::add(&keys, &id))
        }
        Command::Tenants(TenantsCommand::Rotate { keys, id }) => {
            report(pgshroud::cli::tenants::rotate(&keys, &id))
        }
        Command::Forget(args) => report(pgshroud::cli::tenants::forget_interactive(&args)),
        Command::Audit(AuditCommand::Verify(args)) => {
            let (out, code) = pgshroud::audit::verify::run(&args.files, args.key_file.as_deref());
            if code == 0 {
                println!("{out}");
            } else {
                eprintln!("{out}");
            }
            ExitCode::from(code)
        }
    }
}

/// The rules report, then (with --upstream-url) the database's.
fn check(args: &CheckArgs) -> ExitCode {
    let rules = pgshroud::cli::operator::check(&args.rules);
    match (&args.upstream_url, rules) {
        (Some(url), Ok(out)) => {
            println!("{out}");
            database_command(|| pgshroud::cli::setup::database_report(url, &args.rules))
        }
        (_, rules) => report(rules),
    }
}

/// Runs an operator command that talks to PostgreSQL; exits 1 when it reports a problem.
fn database_command<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<pgshroud::cli::setup::Report, String>>,
{
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(command()));
    match result {
        Ok(report) => {
            println!("{}", report.text);
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("pgshroud: {e}");
            ExitCode::from(2)
        }
    }
}

fn demo(listen: &str) -> ExitCode {
    pgshroud::server::logging::init("warn", pgshroud::config::LogFormat::Text);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(pgshroud::cli::demo::run(listen)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgshroud demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match load_settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pgshroud: {e}");
            return ExitCode::from(2);
        }
    };
    pgshroud::server::logging::init(&settings.log_level, settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgshroud: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let proxy = match RunningProxy::start(settings).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pgshroud: {e}");
                return ExitCode::from(2);
            }
        };
        wait_for_signal().await;
        info!("shutdown requested: draining sessions");
        let trigger = proxy.trigger.clone();
        tokio::spawn(async move {
            // A second signal forces the remaining sessions closed.
            wait_for_signal().await;
            trigger.set(Stage::Forced);
        });
        proxy.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Prints a command's output, or its error with a non-zero exit status.
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgshroud: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen() -> ExitCode {
    let key = pgshroud::crypto::MasterKey::generate();
    eprintln!("# A new pgshroud master key. Keep it secret; without it the data cannot be read.");
    eprintln!(
        "# Give it to pgshroud as PGSHROUD_MASTER_KEY, master_key_file or master_key_command."
    );
    println!("{}", key.to_base64().as_str());
    ExitCode::SUCCESS
}

fn load_settings(args: &ServeArgs) -> Result<Settings, String> {
    let file = match &args.config {
        Some(path) => ConfigLayer::from_file(path).map_err(|e| e.to_string())?,
        None => ConfigLayer::default(),
    };
    Settings::resolve(args.layer().over(file)).map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
