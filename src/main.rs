use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    alertcall::exit::report_bus_errors();
    let cli = alertcall::cli::Cli::parse();
    if !cli.is_serve() {
        // `alertcall calls | head` must end quietly when the pipe closes, as other CLI tools
        // do; `serve` keeps Rust's default (SIGPIPE ignored) so that a closed socket is an
        // error to handle, not the end of the process.
        // SAFETY: no other thread exists yet; this only resets a signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(alertcall::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
