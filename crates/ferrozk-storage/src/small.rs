//! Small state files: one value each, replaced whole (consensus keeps its vote, commit point
//! and purge point in them).
//!
//! ```text
//! "FZKS" | u32 crc32 of the value (big-endian) | the value
//! ```
//!
//! Written to `<name>.tmp`, renamed into place, and (when asked to be durable) fsynced with its
//! directory. A file that does not start with the magic was written before the checksum was
//! added and is read as the bare value.

use std::io::{self, Write};
use std::path::Path;

use crate::StorageError;

const MAGIC: &[u8; 4] = b"FZKS";

/// Replaces `dir/name` with `value`.
pub fn write(dir: &Path, name: &str, value: &[u8], durable: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        let mut bytes = Vec::with_capacity(8 + value.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(value).to_be_bytes());
        bytes.extend_from_slice(value);
        f.write_all(&bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The value in `dir/name` (`None`: no such file). A damaged file is an error naming it.
pub fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::Io(path, e)),
    };
    let Some(rest) = bytes.strip_prefix(MAGIC) else { return Ok(Some(bytes)) };
    if rest.len() < 4 {
        return Err(StorageError::Damaged { file: path, offset: 0, reason: format!("cut short ({} bytes)", bytes.len()) });
    }
    let (crc, value) = rest.split_at(4);
    if crc32fast::hash(value).to_be_bytes() != crc {
        return Err(StorageError::Damaged { file: path, offset: MAGIC.len() as u64, reason: "checksum mismatch".into() });
    }
    Ok(Some(value.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("ferrozk-small-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir, "vote").unwrap(), None);
        write(&dir, "vote", b"\x01\x02\x03", true).unwrap();
        assert_eq!(read(&dir, "vote").unwrap(), Some(b"\x01\x02\x03".to_vec()));
        let mut bytes = std::fs::read(dir.join("vote")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(dir.join("vote"), &bytes).unwrap();
        let err = read(&dir, "vote").unwrap_err();
        assert!(matches!(&err, StorageError::Damaged { file, .. } if file.ends_with("vote")), "{err}");
        assert!(
            err.to_string().starts_with("damaged file ") && err.to_string().ends_with("vote at offset 4: checksum mismatch"),
            "{err}"
        );
        // Written before checksums: the bare value.
        std::fs::write(dir.join("committed"), b"\x09\x08").unwrap();
        assert_eq!(read(&dir, "committed").unwrap(), Some(b"\x09\x08".to_vec()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
