//! `result digest|encrypt|decrypt`.

use std::path::Path;

use edgepool_protocol::digest;
use edgepool_protocol::result_archive::{
    self, BeneficiaryPrivateKey, BeneficiaryPublicKey, ExtractLimits,
};

use super::{io, refused, write_atomically, ToolError};
use crate::dir_tree::DirTree;

fn digest_error(e: digest::DigestError) -> ToolError {
    match e {
        digest::DigestError::Tree(inner) => {
            ToolError::Io(anyhow::anyhow!(inner).context("reading the result"))
        }
        other => ToolError::Refused(anyhow::Error::new(other)),
    }
}

/// The digest of a file or directory, or of an output folder through its computed.json.
pub fn digest(iexec_out: Option<&Path>, path: Option<&Path>) -> Result<Option<String>, ToolError> {
    let digest = match (iexec_out, path) {
        (Some(dir), _) => {
            if !dir.is_dir() {
                return Err(ToolError::Io(anyhow::anyhow!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            digest::result_digest(&DirTree::new(dir), "").map_err(digest_error)?
        }
        (None, Some(path)) => {
            if !path.exists() {
                return Err(ToolError::Io(anyhow::anyhow!(
                    "{} does not exist",
                    path.display()
                )));
            }
            digest::path_digest(&DirTree::new(path), "").map_err(digest_error)?
        }
        (None, None) => {
            return Err(ToolError::Refused(anyhow::anyhow!(
                "give PATH or --iexec-out DIR"
            )))
        }
    };
    Ok(Some(digest.to_string()))
}

/// Archives `iexec_out_dir` and encrypts it for the beneficiary.
pub fn encrypt(
    public_key: &Path,
    iexec_out_dir: &Path,
    out_zip: &Path,
) -> Result<Option<String>, ToolError> {
    let text = std::fs::read_to_string(public_key)
        .map_err(io(format!("reading public key {}", public_key.display())))?;
    let key = BeneficiaryPublicKey::parse(&text)
        .map_err(refused(format!("public key {}", public_key.display())))?;
    if !iexec_out_dir.is_dir() {
        return Err(ToolError::Io(anyhow::anyhow!(
            "{} is not a directory",
            iexec_out_dir.display()
        )));
    }
    let plain = result_archive::zip_tree(&DirTree::new(iexec_out_dir), "")
        .map_err(io(format!("archiving {}", iexec_out_dir.display())))?;
    let encrypted = result_archive::encrypt_result(&plain, &key, &mut rand::rngs::OsRng)
        .map_err(refused("encrypting the result"))?;
    write_atomically(out_zip, |w| {
        std::io::Write::write_all(w, &encrypted).map_err(ToolError::from)
    })?;
    Ok(None)
}

/// Decrypts an encrypted result zip to the plain iexec_out.zip.
pub fn decrypt(
    private_key: &Path,
    in_zip: &Path,
    out_zip: &Path,
) -> Result<Option<String>, ToolError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(private_key)
            .map_err(io(format!("reading private key {}", private_key.display())))?,
    );
    let key = BeneficiaryPrivateKey::parse(&text)
        .map_err(refused(format!("private key {}", private_key.display())))?;
    // Streamed from the file to a temporary output (removed on error): a hostile archive costs
    // at most the payload limit in time and disk, never the encrypted or plain size in memory.
    let encrypted = std::io::BufReader::new(
        std::fs::File::open(in_zip).map_err(io(format!("reading {}", in_zip.display())))?,
    );
    write_atomically(out_zip, |w| {
        result_archive::decrypt_result_to(encrypted, &key, &ExtractLimits::default(), w)
            .map_err(refused(format!("decrypting {}", in_zip.display())))
    })?;
    Ok(None)
}
