//! Writes a self-signed certificate for `localhost` and `127.0.0.1`, and its private key,
//! as `cert.pem` and `key.pem` in a directory, to try the examples over TLS:
//!
//! ```sh
//! cargo run --example self_signed_cert -- target/tls
//! cargo run --example echo_server -- --tls target/tls/cert.pem target/tls/key.pem
//! cargo run --example client -- --url wss://localhost:8080/ws --ca target/tls/cert.pem
//! ```
//!
//! For trying things on your own machine only: nothing vouches for the certificate but
//! the file itself, and it is valid for a year from today.

use std::path::PathBuf;

/// Writes `cert.pem` and `key.pem` (a self-signed certificate for localhost and
/// 127.0.0.1) into a directory.
#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    /// Where to write them (made if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = <Cli as clap::Parser>::parse().dir;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names)?;
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    println!("{}\n{}", cert.display(), key.display());
    Ok(())
}
