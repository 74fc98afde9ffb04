//! The backup file format, version 1 (docs/backup-restore.md). Pure: bytes in, bytes out.
//!
//! ```text
//! magic "FBBACKUP" (8 bytes) | format version (u32 LE) = 1
//! header length (u32 LE) | BackupHeader (protobuf, monitor.proto)
//! per entry: length (u32 LE, > 0) | BackupEntry (protobuf: key relative to the etcd prefix, value)
//! end: 0 (u32 LE) | entry count (u64 LE) | SHA-256 of every byte before it (32 bytes)
//! ```
//!
//! Nothing follows the digest. A reader checks the magic and version first (an unknown version
//! may have another layout), then the digest over the whole file, and only then decodes: a
//! truncated file is told apart from an altered one, and nothing of a damaged file is used.

use std::io::{self, Write};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto::monitor as api;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"FBBACKUP";
/// The format this monitor writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest header or entry a reader accepts (an OSD record is about 4 KiB, a PG chunk 7 KiB).
pub const MAX_ENTRY_BYTES: u32 = 64 << 20;
/// Bytes after the last entry: end mark, count, digest.
const TRAILER: usize = 4 + 8 + 32;
/// Bytes before the header.
const PREAMBLE: usize = 8 + 4 + 4;

/// Why a file is not a usable backup. Messages name what is wrong and where, never the content.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a fastblock backup: the file does not start with \"FBBACKUP\"")]
    NotABackup,
    #[error(
        "backup format version {0} is not supported: this fastblock-mon reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion(u32),
    #[error(
        "the backup is truncated: it ends inside {what} at byte {offset} of {size}; it was not written to the end (a full disk, an interrupted copy)"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        size: usize,
    },
    #[error(
        "the backup is damaged: the SHA-256 of its content does not match the one stored at its end (the file was altered after it was written)"
    )]
    Checksum,
    #[error("the backup is malformed at byte {offset}: {why}")]
    Malformed { offset: usize, why: String },
    #[error("cannot read the backup: {0}")]
    Io(#[from] io::Error),
}

/// Writes a backup file: the header at creation, entries one by one, the trailer at the end.
pub struct BackupWriter<W: Write> {
    out: W,
    hasher: Sha256,
    count: u64,
    bytes: u64,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(out: W, header: &api::BackupHeader) -> io::Result<BackupWriter<W>> {
        let mut w = BackupWriter {
            out,
            hasher: Sha256::new(),
            count: 0,
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.put(&FORMAT_VERSION.to_le_bytes())?;
        let header = header.encode_to_vec();
        w.put(&(header.len() as u32).to_le_bytes())?;
        w.put(&header)?;
        Ok(w)
    }

    /// Appends one entry.
    pub fn entry(&mut self, entry: &api::BackupEntry) -> io::Result<()> {
        if entry.key.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a backup entry needs a key",
            ));
        }
        let bytes = entry.encode_to_vec();
        if bytes.len() > MAX_ENTRY_BYTES as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "an entry of {} bytes is over the format's limit",
                    bytes.len()
                ),
            ));
        }
        self.put(&(bytes.len() as u32).to_le_bytes())?;
        self.put(&bytes)?;
        self.count += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the trailer; returns the output, the digest and the entry count.
    pub fn finish(mut self) -> io::Result<(W, [u8; 32], u64)> {
        self.put(&0u32.to_le_bytes())?;
        self.put(&self.count.to_le_bytes())?;
        let digest: [u8; 32] = self.hasher.finalize_reset().into();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        Ok((self.out, digest, self.count))
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }
}

/// A backup read and checked whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub header: api::BackupHeader,
    pub entries: Vec<api::BackupEntry>,
    pub digest: [u8; 32],
}

impl Backup {
    /// The digest as hex (what `backup-verify` prints).
    pub fn digest_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Reads and checks a whole backup file's bytes.
pub fn read_backup(data: &[u8]) -> Result<Backup, BackupError> {
    if data.len() < 8 || &data[..8] != MAGIC {
        // A prefix of the magic is a backup cut short right at its start.
        if !data.is_empty() && data.len() < 8 && MAGIC.starts_with(data) {
            return Err(truncated("the magic", data.len(), data.len()));
        }
        return Err(BackupError::NotABackup);
    }
    if data.len() < 12 {
        return Err(truncated("the format version", data.len(), data.len()));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let sound = data.len() >= PREAMBLE + TRAILER && {
        let (content, digest) = data.split_at(data.len() - 32);
        Sha256::digest(content).as_slice() == digest
    };
    match parse(data) {
        // The layout parses but the digest does not match: altered.
        Ok(_) if !sound => Err(BackupError::Checksum),
        Ok(backup) => Ok(backup),
        // A digest that matches vouches for the bytes: a layout error is the writer's.
        Err(e) if sound => Err(e),
        Err(e @ BackupError::Truncated { .. }) => Err(e),
        // Neither parses nor matches: say it is damaged, which is what the operator must know.
        Err(_) => Err(BackupError::Checksum),
    }
}

fn truncated(what: &'static str, offset: usize, size: usize) -> BackupError {
    BackupError::Truncated { what, offset, size }
}

/// Parses the layout (the digest is checked by the caller).
fn parse(data: &[u8]) -> Result<Backup, BackupError> {
    let size = data.len();
    let mut at = 12;
    let take = |at: &mut usize, n: usize, what: &'static str| -> Result<&[u8], BackupError> {
        if size - *at < n {
            return Err(truncated(what, size, size));
        }
        let s = &data[*at..*at + n];
        *at += n;
        Ok(s)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let header_len = u32_at(take(&mut at, 4, "the header length")?);
    if header_len > MAX_ENTRY_BYTES {
        return Err(BackupError::Malformed {
            offset: 12,
            why: format!("a header of {header_len} bytes"),
        });
    }
    let header_at = at;
    let header = api::BackupHeader::decode(take(&mut at, header_len as usize, "the header")?)
        .map_err(|e| BackupError::Malformed {
            offset: header_at,
            why: format!("the header does not decode: {e}"),
        })?;
    let mut entries = Vec::with_capacity(header.entry_count.min(1 << 24) as usize);
    loop {
        let len_at = at;
        let len = u32_at(take(&mut at, 4, "an entry length")?);
        if len == 0 {
            break;
        }
        if len > MAX_ENTRY_BYTES {
            return Err(BackupError::Malformed {
                offset: len_at,
                why: format!("an entry of {len} bytes"),
            });
        }
        let entry_at = at;
        let entry =
            api::BackupEntry::decode(take(&mut at, len as usize, "an entry")?).map_err(|e| {
                BackupError::Malformed {
                    offset: entry_at,
                    why: format!("entry {} does not decode: {e}", entries.len() + 1),
                }
            })?;
        if entry.key.is_empty() {
            return Err(BackupError::Malformed {
                offset: entry_at,
                why: format!("entry {} has no key", entries.len() + 1),
            });
        }
        entries.push(entry);
    }
    let count_at = at;
    let count = u64::from_le_bytes(take(&mut at, 8, "the entry count")?.try_into().unwrap());
    let digest: [u8; 32] = take(&mut at, 32, "the checksum")?.try_into().unwrap();
    if at != size {
        return Err(BackupError::Malformed {
            offset: at,
            why: format!("{} bytes after the checksum", size - at),
        });
    }
    if count != entries.len() as u64 || header.entry_count != count {
        return Err(BackupError::Malformed {
            offset: count_at,
            why: format!(
                "{} entries, but the trailer says {count} and the header {}",
                entries.len(),
                header.entry_count
            ),
        });
    }
    Ok(Backup {
        header,
        entries,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header(entries: u64) -> api::BackupHeader {
        api::BackupHeader {
            format_version: FORMAT_VERSION,
            revision: 42,
            created_at_ms: 1_700_000_000_000,
            monitor: "m1".to_string(),
            monitor_version: "test".to_string(),
            etcd_prefix: "/fastblock".to_string(),
            entry_count: entries,
            osdmap_epoch: 7,
        }
    }

    fn entries(n: usize) -> Vec<api::BackupEntry> {
        (0..n)
            .map(|i| api::BackupEntry {
                key: format!("cluster/osd/{i:010}"),
                value: vec![i as u8; i % 50],
            })
            .collect()
    }

    fn write(h: &api::BackupHeader, es: &[api::BackupEntry]) -> Vec<u8> {
        let mut w = BackupWriter::new(Vec::new(), h).unwrap();
        for e in es {
            w.entry(e).unwrap();
        }
        w.finish().unwrap().0
    }

    #[test]
    fn round_trip() {
        let es = entries(300);
        let data = write(&header(300), &es);
        let b = read_backup(&data).unwrap();
        assert_eq!(b.header, header(300));
        assert_eq!(b.entries, es);
        assert_eq!(b.digest_hex().len(), 64);
        let empty = write(&header(0), &[]);
        assert!(read_backup(&empty).unwrap().entries.is_empty());
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let data = write(&header(20), &entries(20));
        for len in 0..data.len() {
            let err = read_backup(&data[..len]).unwrap_err();
            match (len, &err) {
                (0, BackupError::NotABackup) => {}
                (_, BackupError::Truncated { .. }) => {}
                _ => panic!("cut at {len}: {err}"),
            }
        }
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let data = write(&header(5), &entries(5));
        for i in 0..data.len() {
            for bit in [0, 3, 7] {
                let mut bad = data.clone();
                bad[i] ^= 1 << bit;
                let err = read_backup(&bad).unwrap_err();
                let expected = match i {
                    0..8 => matches!(err, BackupError::NotABackup),
                    8..12 => matches!(err, BackupError::UnsupportedVersion(_)),
                    // A flip in a length can make the layout end early: truncated is also true.
                    _ => matches!(err, BackupError::Checksum | BackupError::Truncated { .. }),
                };
                assert!(expected, "byte {i} bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn other_versions_and_trailing_bytes_are_refused() {
        let mut data = write(&header(1), &entries(1));
        data[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            read_backup(&data).unwrap_err(),
            BackupError::UnsupportedVersion(2)
        ));
        let mut data = write(&header(1), &entries(1));
        data.push(0);
        assert!(matches!(
            read_backup(&data).unwrap_err(),
            BackupError::Checksum
        ));
        assert!(matches!(
            read_backup(b"{\"osdinfo\":{}}").unwrap_err(),
            BackupError::NotABackup
        ));
    }

    #[test]
    fn a_header_count_that_disagrees_is_malformed_even_with_a_good_digest() {
        let data = write(&header(3), &entries(2));
        let err = read_backup(&data).unwrap_err();
        assert!(matches!(err, BackupError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("2 entries"), "{err}");
    }

    proptest! {
        #[test]
        fn no_bytes_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..512), keep in 0usize..64) {
            // Random bytes, and random bytes after a valid prefix.
            let _ = read_backup(&bytes);
            let good = write(&header(2), &entries(2));
            let mut mixed = good[..keep.min(good.len())].to_vec();
            mixed.extend_from_slice(&bytes);
            let _ = read_backup(&mixed);
        }
    }
}
