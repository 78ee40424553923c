//! Chunk objects: how one piece of a backup stream is named, encoded and checked.
//!
//! An object is `MAGIC`, one codec byte, then the payload: zstd-compressed data, or for encrypted
//! repositories an age file whose plaintext is the zstd-compressed data. The name is the SHA-256 of the
//! plain chunk, or HMAC-SHA-256 under the repository's address key so that names leak nothing.

use std::io::{Read, Write};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{RepoError, Result};

const MAGIC: &[u8; 4] = b"LBK1";
const CODEC_ZSTD: u8 = 0;
const CODEC_ZSTD_AGE: u8 = 1;

/// A chunk's address: 32 bytes, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn parse(text: &str) -> Option<ChunkId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(ChunkId(out))
    }
    /// `chunks/<first two hex digits>/<hex>`: spreads objects over 256 prefixes.
    pub fn object_path(&self) -> String {
        let h = self.to_hex();
        format!("chunks/{}/{}", &h[..2], h)
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// How chunks are named: plain SHA-256, or keyed so that an observer cannot test for known content.
#[derive(Clone)]
pub enum Addressing {
    Sha256,
    Hmac([u8; 32]),
}

impl Addressing {
    pub fn id_of(&self, data: &[u8]) -> ChunkId {
        match self {
            Addressing::Sha256 => ChunkId(Sha256::digest(data).into()),
            Addressing::Hmac(key) => {
                let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(data);
                ChunkId(mac.finalize().into_bytes().into())
            }
        }
    }
}

/// Encodes a chunk for storage. CPU-bound: call it from a blocking thread.
pub fn encode(data: &[u8], level: i32, recipients: &[age::x25519::Recipient]) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(data, level).map_err(|e| RepoError::Task(format!("zstd: {e}")))?;
    let mut out = Vec::with_capacity(compressed.len() + 256);
    out.extend_from_slice(MAGIC);
    if recipients.is_empty() {
        out.push(CODEC_ZSTD);
        out.extend_from_slice(&compressed);
    } else {
        out.push(CODEC_ZSTD_AGE);
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).map_err(|e| {
                RepoError::Encryption {
                    detail: e.to_string(),
                    fix: "check the configured recipients".into(),
                }
            })?;
        let mut w = encryptor
            .wrap_output(&mut out)
            .map_err(|e| RepoError::Task(e.to_string()))?;
        w.write_all(&compressed).map_err(|e| RepoError::Task(e.to_string()))?;
        w.finish().map_err(|e| RepoError::Task(e.to_string()))?;
    }
    Ok(out)
}

/// Decodes an object of the chunk codec without checking its name (for small keyed objects whose
/// integrity is checked another way).
pub fn decode_unchecked(object: &str, stored: &[u8], identity: Option<&age::x25519::Identity>) -> Result<Vec<u8>> {
    let compressed = open_payload(object, stored, identity)?;
    zstd::bulk::decompress(&compressed, 16 << 20).map_err(|e| RepoError::Corrupt {
        object: object.to_string(),
        detail: format!("zstd: {e}"),
    })
}

/// Strips the header and, for encrypted objects, decrypts: returns the compressed bytes.
fn open_payload<'a>(
    object: &str,
    stored: &'a [u8],
    identity: Option<&age::x25519::Identity>,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    let corrupt = |detail: String| RepoError::Corrupt {
        object: object.to_string(),
        detail,
    };
    if stored.len() < 5 || &stored[..4] != MAGIC {
        return Err(corrupt("bad header".into()));
    }
    let payload = &stored[5..];
    match stored[4] {
        CODEC_ZSTD => Ok(std::borrow::Cow::Borrowed(payload)),
        CODEC_ZSTD_AGE => {
            let identity = identity.ok_or_else(|| RepoError::IdentityRequired {
                what: "reading chunk data".into(),
            })?;
            let decryptor = age::Decryptor::new(payload).map_err(|e| corrupt(format!("age header: {e}")))?;
            let mut reader = decryptor
                .decrypt(std::iter::once(identity as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::NoMatchingKeys => RepoError::Encryption {
                        detail: format!("the configured identity cannot decrypt {object}"),
                        fix: "configure the identity that matches this repository's recipients".into(),
                    },
                    e => corrupt(format!("decryption: {e}")),
                })?;
            let mut buf = Vec::new();
            reader
                .read_to_end(&mut buf)
                .map_err(|e| corrupt(format!("decryption: {e}")))?;
            Ok(std::borrow::Cow::Owned(buf))
        }
        other => Err(corrupt(format!("unknown codec {other}"))),
    }
}

/// Checks only what can be checked without the age identity: the header, and that the codec is the one
/// the repository writes (age for encrypted repositories, plain zstd otherwise).
pub fn check_header(object: &str, stored: &[u8], encrypted: bool) -> Result<()> {
    let corrupt = |detail: String| RepoError::Corrupt {
        object: object.to_string(),
        detail,
    };
    if stored.len() < 5 || &stored[..4] != MAGIC {
        return Err(corrupt("bad header".into()));
    }
    let expected = if encrypted { CODEC_ZSTD_AGE } else { CODEC_ZSTD };
    if stored[4] != expected {
        return Err(corrupt(format!(
            "codec {} where this repository writes {expected}",
            stored[4]
        )));
    }
    if encrypted && !stored[5..].starts_with(b"age-encryption.org/v1\n") {
        return Err(corrupt("the payload is not an age file".into()));
    }
    Ok(())
}

/// Decodes a stored chunk and proves it is the chunk `expected` names, of `expected_len` bytes when
/// known. Any mismatch is `Corrupt`, naming the object.
pub fn decode(
    object: &str,
    stored: &[u8],
    expected: &ChunkId,
    expected_len: Option<usize>,
    addressing: &Addressing,
    identity: Option<&age::x25519::Identity>,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| RepoError::Corrupt {
        object: object.to_string(),
        detail,
    };
    let compressed_ref = open_payload(object, stored, identity)?;
    // The plain size is bounded by the chunker's maximum; refuse anything claiming more.
    let limit = expected_len.unwrap_or(16 << 20);
    let data = zstd::bulk::decompress(&compressed_ref, limit).map_err(|e| corrupt(format!("zstd: {e}")))?;
    if let Some(len) = expected_len
        && data.len() != len
    {
        return Err(corrupt(format!("holds {} bytes, the manifest says {len}", data.len())));
    }
    let actual = addressing.id_of(&data);
    if &actual != expected {
        return Err(corrupt(format!(
            "content hashes to {}, not to its name",
            actual.to_hex()
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_encrypted() {
        let data = b"hello chunk".repeat(1000);
        let id = Addressing::Sha256.id_of(&data);
        let enc = encode(&data, 3, &[]).unwrap();
        assert_eq!(
            decode("x", &enc, &id, Some(data.len()), &Addressing::Sha256, None).unwrap(),
            data
        );

        let ident = age::x25519::Identity::generate();
        let addr = Addressing::Hmac([7; 32]);
        let id = addr.id_of(&data);
        assert_ne!(
            id,
            Addressing::Sha256.id_of(&data),
            "keyed names must differ from plain hashes"
        );
        let enc = encode(&data, 3, &[ident.to_public()]).unwrap();
        assert!(
            !enc.windows(11).any(|w| w == b"hello chunk"),
            "ciphertext must not hold the plaintext"
        );
        assert_eq!(decode("x", &enc, &id, None, &addr, Some(&ident)).unwrap(), data);
        let err = decode("x", &enc, &id, None, &addr, None).unwrap_err();
        assert!(matches!(err, RepoError::IdentityRequired { .. }));
    }

    #[test]
    fn a_flipped_byte_is_named_corrupt() {
        let data = vec![42u8; 100_000];
        let id = Addressing::Sha256.id_of(&data);
        let mut enc = encode(&data, 3, &[]).unwrap();
        let n = enc.len();
        enc[n / 2] ^= 0x01;
        let err = decode("chunks/ab/abc", &enc, &id, Some(data.len()), &Addressing::Sha256, None).unwrap_err();
        assert!(err.to_string().contains("chunks/ab/abc"), "{err}");
    }
}
