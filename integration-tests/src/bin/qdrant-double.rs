//! `qdrant-double [--addr 127.0.0.1:0] [--grpc-addr 127.0.0.1:0]`: serves the in-memory Qdrant
//! double until killed. Prints `listening on http://127.0.0.1:PORT` once the REST side is bound;
//! with `--grpc-addr`, also serves the gRPC double on the same data and then prints a second
//! line, `grpc listening on http://127.0.0.1:PORT`.

use std::io::Write;
use std::net::SocketAddr;

use secondpass_it::grpc_double::GrpcDouble;
use secondpass_it::qdrant_double::QdrantDouble;

const USAGE: &str = "usage: qdrant-double [--addr 127.0.0.1:0] [--grpc-addr 127.0.0.1:0]";

struct Args {
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
}

fn parse_addr(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|e| format!("bad {flag} {v}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let mut addr = "127.0.0.1:0".to_string();
    let mut grpc_addr = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--addr" {
            addr = args.next().ok_or("--addr needs a value")?;
        } else if let Some(v) = a.strip_prefix("--addr=") {
            addr = v.to_string();
        } else if a == "--grpc-addr" {
            grpc_addr = Some(args.next().ok_or("--grpc-addr needs a value")?);
        } else if let Some(v) = a.strip_prefix("--grpc-addr=") {
            grpc_addr = Some(v.to_string());
        } else if a == "-h" || a == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        } else {
            return Err(format!("unknown argument: {a}"));
        }
    }
    Ok(Args {
        addr: parse_addr("--addr", &addr)?,
        grpc_addr: grpc_addr
            .map(|g| parse_addr("--grpc-addr", &g))
            .transpose()?,
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("qdrant-double: {e}");
            std::process::exit(2);
        }
    };
    let double = match QdrantDouble::start_on(args.addr).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("qdrant-double: cannot bind {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    say(&format!("listening on {}", double.url()));
    let _grpc = match args.grpc_addr {
        None => None,
        Some(addr) => match GrpcDouble::start_on(double.state().clone(), addr).await {
            Ok(g) => {
                say(&format!("grpc listening on {}", g.url()));
                Some(g)
            }
            Err(e) => {
                eprintln!("qdrant-double: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        },
    };
    std::future::pending::<()>().await;
}
