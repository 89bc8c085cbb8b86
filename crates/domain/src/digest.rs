//! SHA-256 digests in lower-case hex. Every replica hashes each applied command and
//! its audit record, so the JSON is fed to the hash as it is written rather than
//! built first, and the hex is written without a per-character iterator.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `hash` finished, in lower-case hex.
pub fn hex(hash: Sha256) -> String {
    let mut out = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(hash.finalize(), &mut out);
    out.iter().map(|&b| b as char).collect()
}

/// Adds `value`'s JSON encoding (the bytes `serde_json::to_vec` gives) to `hash`.
pub fn update_json<T: Serialize + ?Sized>(hash: &mut Sha256, value: &T) {
    struct Into<'a>(&'a mut Sha256);
    impl std::io::Write for Into<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // As `state::encode`: plain data structs always serialise.
    let _ = serde_json::to_writer(Into(hash), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored digests (request-id records, the audit chain) were computed as
    /// `hex::encode(Sha256::digest(serde_json::to_vec(v)))`: the streamed form must
    /// give the same strings or every existing chain would fail verification.
    #[test]
    fn streamed_json_digests_equal_the_digest_of_the_encoded_bytes() {
        let value = serde_json::json!({"title": "无证经营线索 \"quoted\"\n", "n": [1, 2.5, -3], "none": null});
        let mut h = Sha256::new();
        h.update(b"prefix\0");
        update_json(&mut h, &value);
        let mut expected = Sha256::new();
        expected.update(b"prefix\0");
        expected.update(serde_json::to_vec(&value).unwrap());
        assert_eq!(hex(h), hex::encode(expected.finalize()));
        assert_eq!(
            hex(Sha256::new()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
