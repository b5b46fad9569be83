//! cli: the reference's command line, parsed with clap into `Settings`.
//! (being written)

use crate::settings::Settings;

/// A command-line error: one line, naming the option or argument at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

/// Parses `args` (including the program name in position 0).
pub fn parse_from<I, T>(_args: I) -> Result<Settings, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Err(CliError("not written yet".into()))
}
