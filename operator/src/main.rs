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
    /// Validate a FoodDeliveryApp (schema and CEL rules, as the API server would) and print every object the
    /// operator would apply for it, as multi-document YAML, like `helm template`.
    Render {
        /// The FoodDeliveryApp manifest; `-` reads standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

/// Exit code for an invalid resource (a usage error is clap's 2 as well).
const INVALID: u8 = 2;

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
        Command::Render { file } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
            } else {
                std::fs::read_to_string(&file)
            };
            let text = match text {
                Ok(text) => text,
                Err(error) => {
                    eprintln!(
                        "food-delivery-operator: cannot read {}: {error}",
                        file.display()
                    );
                    return ExitCode::from(INVALID);
                }
            };
            match food_delivery_operator::render(&text) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("food-delivery-operator: {}: {error}", file.display());
                    ExitCode::from(INVALID)
                }
            }
        }
    }
}
