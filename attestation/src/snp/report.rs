//! The SEV-SNP `ATTESTATION_REPORT` structure, read field by field at its offsets.
//!
//! Offsets are those of AMD's SEV-SNP ABI specification (publication 56860), table
//! "ATTESTATION_REPORT Structure". Versions 2, 3 and newer share them; version 3 added the CPUID
//! family/model/stepping at 0x188, version 5 the mitigation vectors after `launch_tcb`. A newer
//! version is accepted as long as the signed range and the signature stay where they are.

use super::{Product, SnpError};

/// Size of a report: the signed body (0x2A0 bytes) and the signature block.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed range: the signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// The oldest version with the layout read here (SNP firmware 1.51 and later report 2 or more).
pub const MIN_VERSION: u32 = 2;

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`, bits 4:2 at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The chip's Versioned Chip Endorsement Key.
    Vcek,
    /// A cloud provider's Versioned Loaded Endorsement Key.
    Vlek,
}

impl SigningKey {
    /// `vcek` or `vlek`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
        }
    }
}

/// A `TCB_VERSION`: a 64-bit value whose bytes are security patch levels. Where each SPL sits
/// depends on the product (Turin added an FMC SPL and moved the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbVersion(pub u64);

/// The SPLs of a `TCB_VERSION` once the product is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spl {
    /// FMC SPL (Turin and later; `None` before).
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Splits the value by the product's layout.
    pub fn spl(self, product: Product) -> Spl {
        let b = self.0.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => Spl {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            Product::Turin => Spl {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// A parsed (not yet verified) report. Borrows the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    bytes: &'a [u8],
}

impl<'a> Report<'a> {
    /// Checks the length, the version and the signature algorithm.
    ///
    /// # Errors
    /// [`SnpError::Truncated`], [`SnpError::UnsupportedVersion`],
    /// [`SnpError::UnsupportedSignatureAlgorithm`], [`SnpError::UnknownSigningKey`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SnpError> {
        if bytes.len() < REPORT_LEN {
            return Err(SnpError::Truncated {
                expected: REPORT_LEN,
                found: bytes.len(),
            });
        }
        let report = Report { bytes };
        let version = report.version();
        if version < MIN_VERSION {
            return Err(SnpError::UnsupportedVersion(version));
        }
        let algo = report.u32_at(0x34);
        if algo != 1 {
            return Err(SnpError::UnsupportedSignatureAlgorithm(algo));
        }
        report.signing_key()?;
        Ok(report)
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    fn u64_at(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_le_bytes(b)
    }

    fn slice(&self, offset: usize, len: usize) -> &'a [u8] {
        &self.bytes[offset..offset + len]
    }

    /// `VERSION` (0x00).
    pub fn version(&self) -> u32 {
        self.u32_at(0x00)
    }
    /// `GUEST_SVN` (0x04).
    pub fn guest_svn(&self) -> u32 {
        self.u32_at(0x04)
    }
    /// `POLICY` (0x08).
    pub fn policy(&self) -> u64 {
        self.u64_at(0x08)
    }
    /// Policy bit 19: the guest allows a debugger.
    pub fn debug(&self) -> bool {
        self.policy() & (1 << 19) != 0
    }
    /// `FAMILY_ID` (0x10, 16 bytes).
    pub fn family_id(&self) -> &'a [u8] {
        self.slice(0x10, 16)
    }
    /// `IMAGE_ID` (0x20, 16 bytes).
    pub fn image_id(&self) -> &'a [u8] {
        self.slice(0x20, 16)
    }
    /// `VMPL` (0x30).
    pub fn vmpl(&self) -> u32 {
        self.u32_at(0x30)
    }
    /// `CURRENT_TCB` (0x38).
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion(self.u64_at(0x38))
    }
    /// `PLATFORM_INFO` (0x40).
    pub fn platform_info(&self) -> u64 {
        self.u64_at(0x40)
    }
    /// `KEY_INFO` (0x48).
    pub fn key_info(&self) -> u32 {
        self.u32_at(0x48)
    }
    /// The signing key named by `KEY_INFO`.
    ///
    /// # Errors
    /// [`SnpError::UnknownSigningKey`] for "none" (7) and reserved values.
    pub fn signing_key(&self) -> Result<SigningKey, SnpError> {
        match (self.key_info() >> 2) & 0x7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(SnpError::UnknownSigningKey(other)),
        }
    }
    /// `REPORT_DATA` (0x50, 64 bytes).
    pub fn report_data(&self) -> &'a [u8] {
        self.slice(0x50, 64)
    }
    /// `MEASUREMENT` (0x90, 48 bytes).
    pub fn measurement(&self) -> &'a [u8] {
        self.slice(0x90, 48)
    }
    /// `HOST_DATA` (0xC0, 32 bytes).
    pub fn host_data(&self) -> &'a [u8] {
        self.slice(0xC0, 32)
    }
    /// `ID_KEY_DIGEST` (0xE0, 48 bytes).
    pub fn id_key_digest(&self) -> &'a [u8] {
        self.slice(0xE0, 48)
    }
    /// `REPORT_ID` (0x140, 32 bytes).
    pub fn report_id(&self) -> &'a [u8] {
        self.slice(0x140, 32)
    }
    /// `REPORTED_TCB` (0x180): the TCB the signing key was derived for.
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion(self.u64_at(0x180))
    }
    /// `CPUID_FAM_ID`, `CPUID_MOD_ID`, `CPUID_STEP` (0x188..0x18B), version 3 and later.
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| (self.bytes[0x188], self.bytes[0x189], self.bytes[0x18A]))
    }
    /// The product named by the CPUID fields (version 3 and later).
    ///
    /// # Errors
    /// [`SnpError::UnknownProduct`] for a family/model this verifier has no root for.
    pub fn product(&self) -> Result<Option<Product>, SnpError> {
        let Some((family, model, _)) = self.cpuid() else {
            return Ok(None);
        };
        match (family, model) {
            (0x19, 0x00..=0x0F) => Ok(Some(Product::Milan)),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Ok(Some(Product::Genoa)),
            (0x1A, 0x00..=0x1F) => Ok(Some(Product::Turin)),
            _ => Err(SnpError::UnknownProduct { family, model }),
        }
    }
    /// `CHIP_ID` (0x1A0, 64 bytes); zero when `MASK_CHIP_ID` is set (always under a VLEK).
    pub fn chip_id(&self) -> &'a [u8] {
        self.slice(0x1A0, 64)
    }
    /// `COMMITTED_TCB` (0x1E0).
    pub fn committed_tcb(&self) -> TcbVersion {
        TcbVersion(self.u64_at(0x1E0))
    }
    /// The running firmware `major.minor.build` (0x1EA, 0x1E9, 0x1E8).
    pub fn current_version(&self) -> String {
        let b = self.slice(0x1E8, 3);
        format!("{}.{}.{}", b[2], b[1], b[0])
    }
    /// The committed firmware `major.minor.build` (0x1EE, 0x1ED, 0x1EC).
    pub fn committed_version(&self) -> String {
        let b = self.slice(0x1EC, 3);
        format!("{}.{}.{}", b[2], b[1], b[0])
    }
    /// `LAUNCH_TCB` (0x1F0).
    pub fn launch_tcb(&self) -> TcbVersion {
        TcbVersion(self.u64_at(0x1F0))
    }
    /// The signed bytes `0x000..0x2A0`.
    pub fn signed(&self) -> &'a [u8] {
        self.slice(0, SIGNED_LEN)
    }
    /// The signature's R and S, each 72 bytes little-endian (0x2A0, 0x2E8).
    pub fn signature_r_s(&self) -> (&'a [u8], &'a [u8]) {
        (self.slice(0x2A0, 72), self.slice(0x2E8, 72))
    }
}
