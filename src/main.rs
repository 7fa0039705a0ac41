//! The `stigmer` binary: the daemon and its CLI in one (see `stigmer --help`).

fn main() -> std::process::ExitCode {
    stigmer::cli::main()
}
