//! `audited-service`: the example invoicing API on a local port, auditing to a
//! Veritrail cluster.
//!
//! ```text
//! make run                                  # a local cluster, in another terminal
//! cargo run -p veritrail-example-audited-service -- --listen 127.0.0.1:8080
//! curl -X POST -H 'x-authenticated-user: ann@finance.example.com' localhost:8080/invoices/7/refund
//! veritrail scan --source invoicing
//! ```

use std::sync::Arc;

use clap::Parser;
use veritrail_client::{Client, Producer, ProducerConfig};

#[derive(Debug, Parser)]
struct Args {
    /// Veritrail nodes, comma-separated.
    #[arg(
        long,
        env = "VERITRAIL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    endpoints: Vec<String>,
    /// Where the example API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The audit source this service writes as.
    #[arg(long, default_value = "invoicing")]
    source: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = Client::connect(args.endpoints)?;
    let producer = Arc::new(Producer::new(&client, ProducerConfig::default())?);
    let app = veritrail_example_audited_service::app(producer, &args.source);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!(
        "audited-service listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
