//! The `latchkey` binary: parse the command line, load the configuration,
//! start logging, run the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latchkey::config::{Config, Secret};
use latchkey::startup::{Application, build_state};
use latchkey::{service, telemetry};

#[derive(Parser)]
#[command(name = "latchkey", version, about = "A multi-tenant identity provider")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a tenant (if needed) and its first admin.
    Bootstrap {
        #[arg(long)]
        tenant: String,
        #[arg(long = "admin-email")]
        admin_email: String,
        /// Generated and printed once when omitted.
        #[arg(
            long = "admin-password",
            env = "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD",
            hide_env_values = true
        )]
        admin_password: Option<String>,
    },
    /// Print the effective configuration, secrets masked.
    CheckConfig,
    /// Print the OpenAPI 3.1 document generated from the handlers.
    Openapi,
}

fn main() -> ExitCode {
    latchkey::memory::fix_mmap_threshold();
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        // Needs no configuration: the document comes from the code alone.
        return match latchkey::api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("latchkey: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latchkey: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log, config.log_format);
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    for name in Config::unknown_variables(&env) {
        tracing::warn!(variable = %name, "unknown LATCHKEY_ variable ignored (misspelled?)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("latchkey: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            latchkey::memory::spawn_trimmer();
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let url = config.public_url_or(config.bind.parse()?);
            build_state(config, url).await?;
            println!("migrations applied");
        }
        Command::Bootstrap {
            tenant,
            admin_email,
            admin_password,
        } => {
            let url = config.public_url_or(config.bind.parse()?);
            let state = build_state(config, url).await?;
            let done = service::bootstrap::bootstrap_admin(
                &state,
                &tenant,
                &admin_email,
                admin_password.map(Secret::new),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "tenant:  {}\nadmin:   {} ({})",
                done.tenant, done.email, done.user_id
            );
            if let Some(pw) = done.generated_password {
                println!("password (shown once): {}", pw.expose());
            }
        }
        Command::Openapi => unreachable!("handled before configuration is read"),
        Command::CheckConfig => {
            println!("{}", serde_json::to_string_pretty(&config.masked())?);
        }
    }
    Ok(())
}
