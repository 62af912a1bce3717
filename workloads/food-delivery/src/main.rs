//! The one food-delivery binary: `serve <service>` runs one service as the operator deploys it, `up` runs the
//! whole platform in one process. One binary keeps the image, the build and the operator simple.

mod services;
mod up;

use clap::{Parser, Subcommand};
use food_delivery_contract::Component;
use food_delivery_kit::{Environment, KitConfig, shutdown_signal};
use services::ServeError;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "food-delivery", version, about = "The food-delivery platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one service, configured from environment variables (as the operator runs it).
    Serve {
        /// The service to run.
        #[arg(value_parser = component_parser())]
        service: Component,
    },
    /// Run the whole platform in one process on one port: SQLite files in a data directory and an in-process
    /// event bus (or Kafka with --kafka). The environment can override service settings, e.g.
    /// KITCHEN_COOK_TIME_MS=500.
    Up {
        /// Port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on (0.0.0.0 to be reachable from other machines).
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Where the services keep their SQLite files and the event journal; a restart keeps the data.
        #[arg(long, default_value = "food-delivery-data")]
        data_dir: PathBuf,
        /// Use the Kafka broker at HOST:PORT instead of the in-process event bus.
        #[arg(long, value_name = "HOST:PORT")]
        kafka: Option<String>,
    },
}

/// Takes a component's name and lists the names in `--help` and in the error for an unknown one.
fn component_parser() -> impl clap::builder::TypedValueParser<Value = Component> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Component::ALL.map(Component::name))
        .try_map(|name| name.parse::<Component>())
}

/// Exit code for a configuration error: the operator's Stalled condition and a human both see the message.
const CONFIGURATION_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service } => serve(service),
        Command::Up {
            port,
            host,
            data_dir,
            kafka,
        } => {
            let options = up::UpOptions {
                host,
                port,
                data_dir,
                kafka,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("food-delivery: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(up::run(options, Environment::from_process())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("food-delivery up: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs one service configured from the environment until SIGTERM or Ctrl-C.
fn serve(service: Component) -> ExitCode {
    let environment = Environment::from_process();
    let configured = KitConfig::from_env(&environment).and_then(|config| {
        let logs = food_delivery_kit::telemetry::init_logging(&config.log)?;
        Ok((config, logs))
    });
    let (config, _logs) = match configured {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("food-delivery: {error}");
            return ExitCode::from(CONFIGURATION_ERROR);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("food-delivery: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let (host, api) = services::start(service, &environment, config, None).await?;
        host.bind_and_serve(api, shutdown_signal()).await?;
        Ok::<(), ServeError>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Config(error)) => {
            eprintln!("food-delivery: {error}");
            ExitCode::from(CONFIGURATION_ERROR)
        }
        Err(ServeError::Host(error)) if error.is_configuration() => {
            eprintln!("food-delivery: configuration error: {error}");
            ExitCode::from(CONFIGURATION_ERROR)
        }
        Err(ServeError::Host(error)) => {
            tracing::error!(%error, "service stopped");
            eprintln!("food-delivery: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed_and_knows_every_service() {
        Cli::command().debug_assert();
        for component in Component::ALL {
            assert!(
                Cli::try_parse_from(["food-delivery", "serve", component.name()]).is_ok(),
                "{component}"
            );
        }
        assert!(Cli::try_parse_from(["food-delivery", "serve", "billing"]).is_err());
    }
}
