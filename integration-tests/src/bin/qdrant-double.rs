//! `qdrant-double [--addr 127.0.0.1:0]`: serves the in-memory Qdrant double until killed.
//! Prints exactly one line, `listening on http://127.0.0.1:PORT`, once bound.

use std::io::Write;
use std::net::SocketAddr;

use secondpass_it::qdrant_double::QdrantDouble;

fn parse_args() -> Result<SocketAddr, String> {
    let mut addr = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--addr" {
            addr = args.next().ok_or("--addr needs a value")?;
        } else if let Some(v) = a.strip_prefix("--addr=") {
            addr = v.to_string();
        } else if a == "-h" || a == "--help" {
            println!("usage: qdrant-double [--addr 127.0.0.1:0]");
            std::process::exit(0);
        } else {
            return Err(format!("unknown argument: {a}"));
        }
    }
    addr.parse().map_err(|e| format!("bad --addr {addr}: {e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("qdrant-double: {e}");
            std::process::exit(2);
        }
    };
    let double = match QdrantDouble::start_on(addr).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("qdrant-double: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", double.url());
    let _ = out.flush();
    drop(out);
    std::future::pending::<()>().await;
}
