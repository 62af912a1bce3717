//! `food-delivery-operator`: print the CRD, render an app's objects, (later) run the controller.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "food-delivery-operator",
    version,
    about = "The food-delivery Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the FoodDeliveryApp CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match food_delivery_operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("food-delivery-operator: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
