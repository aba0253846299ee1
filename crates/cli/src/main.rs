//! The `kefu` binary: parses the command line and hands over to the library.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = kefu_cli::Cli::parse();
    kefu_cli::init_logging(cli.log_format);
    match kefu_cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<kefu_cli::ExitWith>().is_some() => {
            let code = e.downcast_ref::<kefu_cli::ExitWith>().map(|x| x.code).unwrap_or(1);
            eprintln!("kefu: {e:#}");
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kefu stopped");
            eprintln!("kefu: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
