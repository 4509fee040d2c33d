//! The configfs-tsm attester (`/sys/kernel/config/tsm/report`), filled by the attestation issue.
