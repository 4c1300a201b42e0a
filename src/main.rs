//! The `twinbox` binary: parse, run, print one clear error line, exit with the right code.

use clap::Parser;

fn main() {
    if std::env::args_os().next().as_deref()
        == Some(std::ffi::OsStr::new(twinbox::process::exec_shim::SHIM_ARG0))
    {
        twinbox::process::exec_shim::main();
    }
    if std::env::args_os().next().as_deref()
        == Some(std::ffi::OsStr::new(twinbox::vmm::process::ARG0))
    {
        twinbox::vmm::jailed::main();
    }
    // Like other command-line tools, end quietly when stdout goes away (`| head`).
    // SAFETY: setting a signal disposition to the default; no handler involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match twinbox::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            // One line: clap's first line, without its "error: " prefix.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("twinbox: {first} (see 'twinbox --help')");
            std::process::exit(125);
        }
    };
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
