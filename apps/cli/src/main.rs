//! `oxivirt`: parses the command line, finds the kubeconfig, runs one verb on a
//! current-thread runtime (start-up time is most of a `get`), and maps errors to kubectl's
//! lines and exit code 1.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use oxivirt_app_cli::cli::{Cli, Command, Shell};
use oxivirt_app_cli::{api, cmd, kubeconfig, virt};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        let shell = match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "oxivirt",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors before a verb runs, in kubectl's words.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("error: {0}")]
    Kubeconfig(#[from] kubeconfig::Error),
    #[error("error: {}", chain(.0))]
    Connect(#[from] api::Error),
    #[error(transparent)]
    Cmd(#[from] cmd::Error),
    #[error(transparent)]
    Virt(#[from] virt::Error),
}

use oxivirt_api::report::chain;

async fn run(cli: Cli) -> Result<(), Error> {
    let docs = match &cli.command {
        Command::Apply(a) => cmd::load_for_apply(a)?,
        Command::Delete(a) => cmd::load_for_delete(a)?,
        _ => Vec::new(),
    };
    let paths = kubeconfig::locate(
        cli.global.kubeconfig.as_deref(),
        &kubeconfig::Env::from_process(),
    )?;
    let api = api::Api::connect(&paths, cli.global.context.clone()).await?;
    let ctx = cmd::Ctx {
        namespace: cli
            .global
            .namespace
            .clone()
            .unwrap_or_else(|| api.default_namespace.clone()),
        api: &api,
    };
    match &cli.command {
        Command::Apply(_) => cmd::apply(&ctx, docs).await?,
        Command::Get(a) => cmd::get(&ctx, a).await?,
        Command::Describe(a) => cmd::describe(&ctx, a).await?,
        Command::Delete(a) => cmd::delete(&ctx, a, docs).await?,
        Command::Start(a) => virt::start(&ctx, a).await?,
        Command::Stop(a) => virt::stop(&ctx, a).await?,
        Command::Restart(a) => virt::restart(&ctx, a).await?,
        Command::Pause(a) => virt::pause(&ctx, a, true).await?,
        Command::Unpause(a) => virt::pause(&ctx, a, false).await?,
        Command::Console(a) => virt::console(&ctx, a).await?,
        Command::Completion { .. } => {}
    }
    Ok(())
}
