//! `dataset encrypt|decrypt|checksum`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use edgepool_protocol::dataset::{self, DatasetKey};
use edgepool_protocol::hash::Sha256;
use edgepool_protocol::primitives::Digest;
use rand::RngCore;

use super::{io, refused, write_atomically, ToolError};

/// Reads a base64 key file as the iExec SDK writes it.
fn read_key(path: &Path) -> Result<DatasetKey, ToolError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(io(format!("reading key file {}", path.display())))?,
    );
    DatasetKey::from_base64(&text).map_err(refused(format!("key file {}", path.display())))
}

fn open(path: &Path) -> Result<BufReader<File>, ToolError> {
    let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    Ok(BufReader::with_capacity(64 * 1024, file))
}

/// Encrypts `input` to `output`; the answer is `{"key": …, "checksum": …}`, with the key only
/// when it was generated here.
pub fn encrypt(
    key_file: Option<&Path>,
    input: &Path,
    output: &Path,
) -> Result<Option<String>, ToolError> {
    let mut rng = rand::rngs::OsRng;
    let (key, generated) = match key_file {
        Some(path) => (read_key(path)?, false),
        None => (DatasetKey::generate(&mut rng), true),
    };
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let mut reader = open(input)?;
    let checksum = write_atomically(output, |writer| {
        dataset::encrypt_stream(&key, iv, &mut reader, writer).map_err(io(format!(
            "encrypting {} to {}",
            input.display(),
            output.display()
        )))
    })?;
    /// Fields in the order the issue and the README show them: key first.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        checksum: String,
    }
    let key_text = key.to_base64();
    let answer = Answer {
        key: generated.then_some(key_text.as_str()),
        checksum: checksum.to_string(),
    };
    let text = serde_json::to_string(&answer).map_err(|e| ToolError::Io(e.into()))?;
    Ok(Some(text))
}

/// Decrypts `input` to `output`, which appears only when the whole file decrypted.
pub fn decrypt(
    key_file: &Path,
    checksum: Option<&str>,
    input: &Path,
    output: &Path,
) -> Result<Option<String>, ToolError> {
    let key = read_key(key_file)?;
    let expected = checksum
        .map(|text| {
            text.parse::<Digest>().map_err(|e| {
                ToolError::Refused(anyhow::anyhow!(
                    "--checksum {text:?}: expected 0x and 64 hex digits ({e})"
                ))
            })
        })
        .transpose()?;
    let mut reader = open(input)?;
    write_atomically(output, |writer| {
        let outcome = match &expected {
            Some(sum) => dataset::decrypt_stream_checked(&key, sum, &mut reader, writer),
            None => dataset::decrypt_stream(&key, &mut reader, writer),
        };
        outcome.map_err(|e| match e {
            dataset::DatasetError::Io(_) => ToolError::Io(
                anyhow::Error::new(e).context(format!("decrypting {}", input.display())),
            ),
            other => ToolError::Refused(
                anyhow::Error::new(other).context(format!("decrypting {}", input.display())),
            ),
        })
    })?;
    Ok(None)
}

/// `0x` + sha256 of the file, streamed.
pub fn checksum(file: &Path) -> Result<Option<String>, ToolError> {
    let mut reader = open(file)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher).map_err(io(format!("reading {}", file.display())))?;
    Ok(Some(hasher.finalize().to_string()))
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Io(anyhow::Error::new(e).context("writing the output file"))
    }
}
