//! The `twinbox` binary: parse, run, print one clear error line, exit with the right code.

use clap::Parser;

fn main() {
    let cli = twinbox::cli::Cli::parse();
    let code = match twinbox::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = twinbox::monitor::error_chain(&e);
            eprintln!("twinbox: {msg}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
