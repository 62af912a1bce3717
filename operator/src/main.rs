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
    /// Run the controller: keep every FoodDeliveryApp's objects as its spec says and report its status.
    Run {
        /// Where /healthz, /readyz and /metrics are served.
        #[arg(long, default_value = "0.0.0.0:8080", env = "OPERATOR_HTTP_ADDRESS")]
        http_address: std::net::SocketAddr,
        /// Watch FoodDeliveryApps in this namespace only (default: all namespaces).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// This replica's identity in the leader Lease (the pod name).
        #[arg(long, env = "POD_NAME", default_value = "food-delivery-operator")]
        identity: String,
        /// The namespace of the leader Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
    },
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
        Command::Run {
            http_address,
            namespace,
            identity,
            lease_namespace,
        } => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let options = food_delivery_operator::controller::RunOptions {
                http_address,
                namespace,
                lease: food_delivery_operator::leader::LeaseSettings {
                    name: "food-delivery-operator".to_owned(),
                    namespace: lease_namespace,
                    identity,
                    duration: std::time::Duration::from_secs(15),
                },
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("food-delivery-operator: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(food_delivery_operator::controller::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("food-delivery-operator: {error}");
                    ExitCode::FAILURE
                }
            }
        }
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
                    for warning in
                        food_delivery_operator::render_warnings(&text).unwrap_or_default()
                    {
                        eprintln!("food-delivery-operator: warning: {warning}");
                    }
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
