//! Snapshot files: a checksummed dump of the `sm` tree.
//!
//! ```text
//! "CONCORDSNAP1\n"
//! u32 meta length, SnapshotMeta as JSON
//! repeated: u32 key length, key, u32 value length, value
//! u32::MAX, SHA-256 of every byte before this marker
//! ```
//! A truncated or altered file fails the checksum and is never installed.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// Alignment of buffers, offsets and lengths for `O_DIRECT` (the largest logical
/// block size of a common disk).
const ALIGN: usize = 4096;
/// Bytes handed to the kernel per write.
const CHUNK: usize = 1 << 20;

/// Writes a new file past the page cache (`O_DIRECT`), in whole aligned chunks.
///
/// Why: a snapshot is the whole state, rebuilt on every node as the log grows.
/// Through the page cache each build cost its node a kernel copy of every byte,
/// then the writeback of all of them at the final `fsync` — over half of a build's
/// CPU, and the builds were a tenth of the cluster's CPU under a write load
/// (docs/performance.md, "Snapshots past the page cache"). A filesystem that
/// refuses direct I/O (`EINVAL`: tmpfs before Linux 6.6, some overlays) gets
/// ordinary writes instead; the file's bytes are the same either way.
struct DirectWriter {
    path: PathBuf,
    file: File,
    direct: bool,
    /// `CHUNK` bytes from `start` are the aligned window.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes of the file written so far (always a multiple of `CHUNK`).
    written: u64,
}

impl DirectWriter {
    fn create(path: &Path, direct: bool) -> std::io::Result<DirectWriter> {
        let opened = if direct {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        let (file, direct) = match opened {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (File::create(path)?, false),
            Err(e) => return Err(e),
        };
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Ok(DirectWriter {
            path: path.to_path_buf(),
            file,
            direct,
            buf,
            start,
            filled: 0,
            written: 0,
        })
    }

    /// Writes the first `len` bytes of the window at `written`. Positioned, so a
    /// direct write the filesystem refuses is simply written again, buffered.
    fn put(&mut self, len: usize) -> std::io::Result<()> {
        let data = &self.buf[self.start..self.start + len];
        match self.file.write_all_at(data, self.written) {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.file = OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.file.write_all_at(data, self.written)
            }
            other => other,
        }
    }

    /// Writes what is left, sets the exact length and syncs the file.
    fn finish(mut self) -> std::io::Result<()> {
        let tail = self.filled;
        if self.direct {
            // Direct writes are whole blocks: pad the last one, then cut the file
            // back to the bytes that belong to it.
            let padded = tail.div_ceil(ALIGN) * ALIGN;
            self.buf[self.start + tail..self.start + padded].fill(0);
            self.put(padded)?;
            self.file.set_len(self.written + tail as u64)?;
        } else {
            self.put(tail)?;
        }
        self.file.sync_all()
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.filled);
        let at = self.start + self.filled;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == CHUNK {
            self.put(CHUNK)?;
            self.written += CHUNK as u64;
            self.filled = 0;
        }
        Ok(n)
    }

    /// Chunks go out as they fill; the rest at `finish`.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asks the kernel to read all of `file` into the page cache in the background.
/// Advice only: nothing fails if it is not taken.
pub fn prefetch(file: &impl std::os::fd::AsRawFd) {
    // SAFETY: `posix_fadvise` only reads its integer arguments; the descriptor is
    // open for the duration of the call, borrowed from `file`.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
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
    write_to(DirectWriter::create(path, true)?, meta, entries)
}

fn write_to<I, K, V>(file: DirectWriter, meta: &Meta, entries: I) -> std::io::Result<u64>
where
    I: IntoIterator<Item = std::io::Result<(K, V)>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut w = HashingWriter {
        inner: file,
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
    let mut file = w.inner;
    file.write_all(&END.to_be_bytes())?;
    file.write_all(&digest)?;
    file.finish()?;
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

    /// Direct writes go out in aligned chunks with the last block padded and cut
    /// back: the file must be byte for byte the one ordinary writes make, at any
    /// length — several chunks, a tail that ends mid-block, and one that is empty.
    #[test]
    fn a_snapshot_written_past_the_page_cache_is_the_file_buffered_writes_make(
    ) -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let meta = Meta::default();
        let header = MAGIC.len() + 4 + serde_json::to_vec(&meta).map_err(crate::io_err)?.len();
        // 8 bytes of framing per entry; the trailer is 4 + 32.
        let fill_to = |total: usize| -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut entries = vec![];
            let mut left = total - header - 36;
            let mut i = 0u32;
            while left > 0 {
                let k = format!("s/key/{i:08}").into_bytes();
                let v_len = (left - 8 - k.len()).min(70_000);
                left -= 8 + k.len() + v_len;
                entries.push((k, vec![(i % 251) as u8; v_len]));
                i += 1;
            }
            entries
        };
        for total in [3 * CHUNK + 1234, 2 * CHUNK, CHUNK - 1, 5000] {
            let entries = fill_to(total);
            let direct = dir.path().join(format!("direct-{total}.snap"));
            let buffered = dir.path().join(format!("buffered-{total}.snap"));
            write(&direct, &meta, entries.iter().map(|(k, v)| Ok((k, v))))?;
            write_to(
                DirectWriter::create(&buffered, false)?,
                &meta,
                entries.iter().map(|(k, v)| Ok((k, v))),
            )?;
            let bytes = std::fs::read(&direct)?;
            assert_eq!(bytes.len(), total);
            assert!(bytes == std::fs::read(&buffered)?, "{total} bytes differ");
            let mut got = vec![];
            read(&direct, |k, v| {
                got.push((k, v));
                Ok(())
            })?;
            assert!(got == entries, "{total}: entries read back differ");
        }
        Ok(())
    }
}
