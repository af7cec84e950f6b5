//! The `toolgate` binary: a thin shell around [`toolgate_server::cli`].

use std::process::ExitCode;

// Every request allocates on several threads (tokio workers, the journal, the blocking pool);
// glibc's malloc spent a quarter of the server's CPU on its locks and free-list upkeep in the
// execute benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    toolgate_server::cli::main()
}
