//! The commands: `run`, `preview` and `check`.

mod check;
mod preview;
mod run;
mod serve;
mod summary;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::Command;
use crate::config::Config;

/// Exit code for a config or usage problem; runtime failures exit with 1.
const CONFIG_ERROR: u8 = 2;

/// Runs one command.
pub fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            config,
            input,
            once,
        } => {
            let Some(config) = load(&config) else {
                return Ok(ExitCode::from(CONFIG_ERROR));
            };
            run::run(config, &input, once)
        }
        Command::Serve { config, listen } => {
            let Some(config) = load(&config) else {
                return Ok(ExitCode::from(CONFIG_ERROR));
            };
            serve::serve(config, listen)
        }
        Command::Preview {
            config,
            profile,
            input,
        } => {
            let Some(config) = load(&config) else {
                return Ok(ExitCode::from(CONFIG_ERROR));
            };
            preview::preview(&config, &profile, &input)
        }
        Command::Check { config } => {
            let Some(config) = load(&config) else {
                return Ok(ExitCode::from(CONFIG_ERROR));
            };
            check::check(&config);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the config, printing every problem when it is invalid.
fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(error) => {
            eprintln!("error: {error}");
            None
        }
    }
}
