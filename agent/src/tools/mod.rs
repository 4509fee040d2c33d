//! The iExec-compatible tools behind `edgepool-agent dataset|result|tag|poco`.
//!
//! Each command writes its answer on stdout (a `0x…` value, a name list or one JSON object) and
//! nothing else, so scripts can rely on it; errors go to stderr with a non-zero exit code.

mod dataset;
mod output;
mod poco;
mod result;

use std::io::Write;

use crate::cli::{Command, DatasetCommand, PocoCommand, ResultCommand, TagCommand};

pub use output::write_atomically;

/// Why a tool failed, with the exit code `main` returns for it.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The input was read but refused (bad key, bad padding, bad tag, bad hex…): exit code 1.
    #[error("{0:#}")]
    Refused(anyhow::Error),
    /// A file could not be read or written: exit code 3.
    #[error("{0:#}")]
    Io(anyhow::Error),
}

impl ToolError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Refused(_) => 1,
            ToolError::Io(_) => 3,
        }
    }
}

/// Runs one tool command, printing its answer to `stdout`.
///
/// # Errors
/// [`ToolError`] when the command fails; nothing is printed on stdout then.
pub fn run(command: Command, stdout: &mut dyn Write) -> Result<(), ToolError> {
    let answer = match command {
        Command::Dataset(DatasetCommand::Encrypt {
            key_file,
            input,
            output,
        }) => dataset::encrypt(key_file.as_deref(), &input, &output)?,
        Command::Dataset(DatasetCommand::Decrypt {
            key_file,
            checksum,
            input,
            output,
        }) => dataset::decrypt(&key_file, checksum.as_deref(), &input, &output)?,
        Command::Dataset(DatasetCommand::Checksum { file }) => dataset::checksum(&file)?,
        Command::Result(ResultCommand::Digest { iexec_out, path }) => {
            result::digest(iexec_out.as_deref(), path.as_deref())?
        }
        Command::Result(ResultCommand::Encrypt {
            public_key,
            iexec_out_dir,
            out_zip,
        }) => result::encrypt(&public_key, &iexec_out_dir, &out_zip)?,
        Command::Result(ResultCommand::Decrypt {
            private_key,
            in_zip,
            out_zip,
        }) => result::decrypt(&private_key, &in_zip, &out_zip)?,
        Command::Tag(TagCommand::Encode { names }) => poco::tag_encode(&names)?,
        Command::Tag(TagCommand::Decode { tag }) => poco::tag_decode(&tag)?,
        Command::Poco(PocoCommand::TaskId { deal_id, index }) => poco::task_id(&deal_id, index)?,
        Command::Poco(PocoCommand::Hashes {
            task_id,
            digest,
            worker,
        }) => poco::hashes(&task_id, &digest, &worker)?,
        other => {
            return Err(ToolError::Refused(anyhow::anyhow!(
                "{other:?} is a daemon command, not a tool"
            )))
        }
    };
    if let Some(answer) = answer {
        writeln!(stdout, "{answer}")
            .map_err(|e| ToolError::Io(anyhow::Error::new(e).context("writing to stdout")))?;
    }
    Ok(())
}

/// Maps a refusal of the input.
fn refused<E: Into<anyhow::Error>>(context: impl std::fmt::Display) -> impl FnOnce(E) -> ToolError {
    move |e| ToolError::Refused(e.into().context(context.to_string()))
}

/// Maps a failure to read or write a file.
fn io<E: Into<anyhow::Error>>(context: impl std::fmt::Display) -> impl FnOnce(E) -> ToolError {
    move |e| ToolError::Io(e.into().context(context.to_string()))
}
