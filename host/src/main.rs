//! The `toolgate` binary: a thin shell around [`toolgate_host::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    toolgate_host::cli::main()
}
