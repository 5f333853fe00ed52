//! The commands: `run`, `preview` and `check`.

mod check;
mod operate;
mod plugins;
mod preview;
mod run;
mod serve;
mod summary;
mod table;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::Command;
use crate::config::Config;
use crate::store::{DeliveryFilter, Selection};

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
        Command::Status { config, json } => done(operate::status(&config, json)),
        Command::Deliveries {
            config,
            profile,
            state,
            order,
            limit,
            json,
        } => {
            let filter = DeliveryFilter {
                profile,
                state,
                order_id: order,
                limit,
            };
            done(operate::deliveries(&config, filter, json))
        }
        Command::Retry {
            config,
            ids,
            profile,
            all,
            json,
        } => {
            let selection = match (profile, all) {
                (Some(profile), _) => Selection::Profile(profile),
                (None, true) => Selection::All,
                (None, false) => Selection::Ids(ids),
            };
            done(operate::retry(&config, selection, json))
        }
        Command::Replay {
            config,
            profile,
            since,
            until,
            json,
        } => done(operate::replay(
            &config,
            &profile,
            &since,
            until.as_deref(),
            json,
        )),
        Command::Pause {
            config,
            profile,
            json,
        } => done(operate::pause(&config, &profile, true, json)),
        Command::Resume {
            config,
            profile,
            json,
        } => done(operate::pause(&config, &profile, false, json)),
        Command::Check { config, connect } => {
            let Some(config) = load(&config) else {
                return Ok(ExitCode::from(CONFIG_ERROR));
            };
            check::check(&config);
            if connect {
                return check::connect(&config);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins { config } => plugins::plugins(&config),
    }
}

/// A command that has no exit status of its own: success, or the error.
fn done(result: anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    result.map(|()| ExitCode::SUCCESS)
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
