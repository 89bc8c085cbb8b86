//! Snapshot files: a checksummed dump of the `sm` tree.
//!
//! ```text
//! "CONCORDSNAP1\n"
//! u32 meta length, SnapshotMeta as JSON
//! repeated: u32 key length, key, u32 value length, value
//! u32::MAX, SHA-256 of every byte before this marker
//! ```
//! A truncated or altered file fails the checksum and is never installed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{NodeId, NodeInfo};

pub type Meta = openraft::SnapshotMeta<NodeId, NodeInfo>;

const MAGIC: &[u8] = b"CONCORDSNAP1\n";
const END: u32 = u32::MAX;

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Writes a snapshot of `entries` to `path` and fsyncs it.
pub fn write<I, K, V>(path: &Path, meta: &Meta, entries: I) -> std::io::Result<u64>
where
    I: IntoIterator<Item = std::io::Result<(K, V)>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let file = File::create(path)?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
    };
    w.write_all(MAGIC)?;
    let meta_json = serde_json::to_vec(meta).map_err(crate::io_err)?;
    w.write_all(&(meta_json.len() as u32).to_be_bytes())?;
    w.write_all(&meta_json)?;
    let mut count = 0;
    for kv in entries {
        let (k, v) = kv?;
        let (k, v) = (k.as_ref(), v.as_ref());
        w.write_all(&(k.len() as u32).to_be_bytes())?;
        w.write_all(k)?;
        w.write_all(&(v.len() as u32).to_be_bytes())?;
        w.write_all(v)?;
        count += 1;
    }
    let digest = w.hash.finalize_reset();
    let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.write_all(&END.to_be_bytes())?;
    file.write_all(&digest)?;
    file.sync_all()?;
    Ok(count)
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_vec(r: &mut impl Read, len: u32) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; len as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the header from the start of a snapshot file.
pub fn read_header(r: &mut impl Read) -> std::io::Result<Meta> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(bad("not a Concord snapshot file"));
    }
    let len = read_u32(r)?;
    if len > 64 << 20 {
        return Err(bad("snapshot header too large"));
    }
    serde_json::from_slice(&read_vec(r, len)?).map_err(|e| bad(format!("snapshot header: {e}")))
}

/// Reads only the header.
pub fn read_meta(path: &Path) -> std::io::Result<Meta> {
    read_header(&mut BufReader::new(File::open(path)?))
}

/// Verifies the whole file, then feeds every entry to `each` in file order. Nothing is
/// fed from a file whose checksum does not match.
pub fn read(
    path: &Path,
    each: impl FnMut(Vec<u8>, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<Meta> {
    verify(path)?;
    read_verified(path, each)
}

/// [`read`] of a file the caller has just verified: a snapshot of gigabytes is
/// not hashed twice on its way in.
pub fn read_verified(
    path: &Path,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<Meta> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let meta = read_header(&mut r)?;
    loop {
        let klen = read_u32(&mut r)?;
        if klen == END {
            return Ok(meta);
        }
        let k = read_vec(&mut r, klen)?;
        let vlen = read_u32(&mut r)?;
        let v = read_vec(&mut r, vlen)?;
        each(k, v)?;
    }
}

/// Checks the structure and checksum of a snapshot file.
pub fn verify(path: &Path) -> std::io::Result<Meta> {
    let mut r = HashingReader {
        inner: BufReader::with_capacity(1 << 20, File::open(path)?),
        hash: Sha256::new(),
    };
    let meta = read_header(&mut r)?;
    loop {
        let mut b = [0u8; 4];
        r.inner.read_exact(&mut b)?;
        let klen = u32::from_be_bytes(b);
        if klen == END {
            let computed = r.hash.finalize_reset();
            let mut stored = [0u8; 32];
            r.inner.read_exact(&mut stored)?;
            if computed.as_slice() != stored {
                return Err(bad("snapshot checksum mismatch"));
            }
            return Ok(meta);
        }
        r.hash.update(b);
        let _ = read_vec(&mut r, klen)?;
        let vlen = read_u32(&mut r)?;
        let _ = read_vec(&mut r, vlen)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let meta = Meta::default();
        let entries = vec![
            (b"s/a".to_vec(), b"1".to_vec()),
            (b"s/b".to_vec(), vec![0u8; 1000]),
        ];
        write(&path, &meta, entries.clone().into_iter().map(Ok)).unwrap();
        let mut got = vec![];
        read(&path, |k, v| {
            got.push((k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, entries);

        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify(&path).is_err());
        assert!(read(&path, |_, _| panic!("fed an entry from a tampered file")).is_err());
    }
}
