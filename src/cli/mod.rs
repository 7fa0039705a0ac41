//! The command line: `stigmer daemon` and the client commands.
//! (Placeholder until the CLI lands.)

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
