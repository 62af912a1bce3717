//! The one food-delivery binary: `serve <service>` runs one service as the operator deploys it, `up` runs the
//! whole platform in one process. One binary keeps the image, the build and the operator simple.

use clap::{Parser, Subcommand, ValueEnum};
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
        service: Service,
    },
    /// Run the whole platform in one process on one port, with SQLite files and an in-process event bus.
    Up,
}

/// The services the platform is made of.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    Gateway,
    Customer,
    Order,
    Payment,
    Kitchen,
    Delivery,
    Mypage,
    Stamp,
}

impl Service {
    /// The issue that delivers the service, while it is not built yet.
    fn arrives_with(self) -> &'static str {
        match self {
            Self::Order | Self::Payment | Self::Kitchen | Self::Delivery => {
                "the ordering-saga work (issue 3)"
            }
            Self::Gateway | Self::Customer | Self::Mypage | Self::Stamp => {
                "the read-side and edge work (issue 4)"
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service } => {
            eprintln!(
                "food-delivery: the {service:?} service is not built yet; it arrives with {}. \
                 The runtime it will stand on (workloads/kit) is ready.",
                service.arrives_with()
            );
            ExitCode::from(2)
        }
        Command::Up => {
            eprintln!("food-delivery: `up` arrives with the read-side and edge work (issue 4).");
            ExitCode::from(2)
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
        for service in [
            "gateway", "customer", "order", "payment", "kitchen", "delivery", "mypage", "stamp",
        ] {
            assert!(
                Cli::try_parse_from(["food-delivery", "serve", service]).is_ok(),
                "{service}"
            );
        }
        assert!(Cli::try_parse_from(["food-delivery", "serve", "billing"]).is_err());
    }
}
