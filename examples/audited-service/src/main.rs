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
use veritrail_client::{Client, ClientConfig, Producer, ProducerConfig, TlsSettings};

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
    /// The cluster's CA (PEM). Without it the service talks plain HTTP/2,
    /// which only a development cluster (`make run`) accepts.
    #[arg(long, env = "VERITRAIL_CA")]
    ca: Option<std::path::PathBuf>,
    /// This service's certificate (PEM): its identity in the log.
    #[arg(long, env = "VERITRAIL_CERT", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "VERITRAIL_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = ClientConfig::new(args.endpoints);
    if let Some(ca) = &args.ca {
        let identity = args.cert.as_deref().zip(args.key.as_deref());
        config.tls = Some(TlsSettings::from_files(ca, identity)?);
    }
    let client = Client::with_config(config)?;
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
