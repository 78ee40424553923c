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
        let mut hasher = ChunkHasher::new(self);
        hasher.update(data);
        hasher.finish()
    }
}

/// An address computed piece by piece (see [`decode_to`]), or at once ([`Addressing::id_of`]).
enum ChunkHasher {
    Sha256(Sha256),
    Hmac(hmac::Hmac<Sha256>),
}

impl ChunkHasher {
    fn new(addressing: &Addressing) -> ChunkHasher {
        match addressing {
            Addressing::Sha256 => ChunkHasher::Sha256(Sha256::new()),
            Addressing::Hmac(key) => ChunkHasher::Hmac(
                <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length"),
            ),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            ChunkHasher::Sha256(h) => Digest::update(h, data),
            ChunkHasher::Hmac(m) => m.update(data),
        }
    }
    fn finish(self) -> ChunkId {
        match self {
            ChunkHasher::Sha256(h) => ChunkId(h.finalize().into()),
            ChunkHasher::Hmac(m) => ChunkId(m.finalize().into_bytes().into()),
        }
    }
}

/// How much plaintext [`decode_to`] handles at a time: small enough to stay in a core's cache
/// between decompressing, hashing and writing it.
const PIECE: usize = 128 * 1024;

/// No chunk is larger (the chunker's maximum is below it).
const MAX_PLAIN: usize = 16 << 20;

/// Like [`decode`], but hands the plaintext to `sink` (offset within the chunk, bytes) a piece at
/// a time as it is decompressed, instead of returning it whole. Each piece is hashed and written
/// while it is still in the CPU's cache, where [`decode`] makes three passes over a 1–4 MiB buffer:
/// that is most of the cost of fetching a stream. Only once the last piece is through is the chunk
/// proven: on an error, whatever `sink` received must be discarded.
pub fn decode_to(
    object: &str,
    stored: &[u8],
    expected: &ChunkId,
    expected_len: Option<usize>,
    addressing: &Addressing,
    identity: Option<&age::x25519::Identity>,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let corrupt = |detail: String| RepoError::Corrupt {
        object: object.to_string(),
        detail,
    };
    let compressed = open_payload(object, stored, identity)?;
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(&compressed[..]).map_err(|e| corrupt(format!("zstd: {e}")))?;
    let mut hasher = ChunkHasher::new(addressing);
    let mut piece = vec![0u8; PIECE];
    let mut done = 0usize;
    loop {
        let n = decoder.read(&mut piece).map_err(|e| corrupt(format!("zstd: {e}")))?;
        if n == 0 {
            break;
        }
        // The plain size is bounded by the manifest, or by the chunker's maximum.
        if done + n > expected_len.unwrap_or(MAX_PLAIN) {
            return Err(corrupt(match expected_len {
                Some(len) => format!("holds more than the {len} bytes the manifest says"),
                None => format!("holds more than {MAX_PLAIN} bytes, more than any chunk"),
            }));
        }
        hasher.update(&piece[..n]);
        sink(done as u64, &piece[..n])?;
        done += n;
    }
    if let Some(len) = expected_len
        && done != len
    {
        return Err(corrupt(format!("holds {done} bytes, the manifest says {len}")));
    }
    let actual = hasher.finish();
    if &actual != expected {
        return Err(corrupt(format!(
            "content hashes to {}, not to its name",
            actual.to_hex()
        )));
    }
    Ok(())
}

/// Encodes a chunk for storage. CPU-bound: call it from a blocking thread.
pub fn encode(data: &[u8], level: i32, recipients: &[age::x25519::Recipient]) -> Result<Vec<u8>> {
    let compressed = compress(data, level).map_err(|e| RepoError::Task(format!("zstd: {e}")))?;
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

/// zstd at `level`, with a compression context kept per thread: a new context for every chunk
/// allocates and clears about a megabyte of match tables each time.
fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|context| {
        let compressor = match context {
            Some((at, compressor)) if *at == level => compressor,
            _ => &mut context.insert((level, compressor_for(level)?)).1,
        };
        compressor.compress(data)
    })
}

/// The shortest match zstd may encode at level 3, the level lifeboat writes, where zstd's own is 5
/// (for inputs over 256 KiB: 7 at level 1, 6 at level 2, 5 at levels 3 and 4).
///
/// A dump is mostly rows of text: at length 5 the match finder spends its time on short matches
/// that barely pay for their encoding. Measured on 2 MiB pieces (zstd 1.5.7, level 3, length 6
/// against 5): a PostgreSQL dump of the rental data took 21 % less CPU and came out 2.0 % smaller;
/// a dump of real text tables (crate index, Unihan, IEEE registry) 23 % less CPU for the same
/// size; a mysqldump 1.3 % larger; source code 0.7 % and binaries 2.2 % larger, each for about a
/// fifth less CPU. Other levels keep zstd's own; decompression does not depend on it.
const MIN_MATCH_FOR_DUMPS: u32 = 6;

fn compressor_for(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    if level == 3 {
        compressor.set_parameter(zstd::zstd_safe::CParameter::MinMatch(MIN_MATCH_FOR_DUMPS))?;
    }
    Ok(compressor)
}

/// Decodes an object of the chunk codec without checking its name (for small keyed objects whose
/// integrity is checked another way).
pub fn decode_unchecked(object: &str, stored: &[u8], identity: Option<&age::x25519::Identity>) -> Result<Vec<u8>> {
    let compressed = open_payload(object, stored, identity)?;
    zstd::bulk::decompress(&compressed, MAX_PLAIN).map_err(|e| RepoError::Corrupt {
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
    let mut data = Vec::with_capacity(expected_len.unwrap_or(0));
    decode_to(
        object,
        stored,
        expected,
        expected_len,
        addressing,
        identity,
        |_, piece| {
            data.extend_from_slice(piece);
            Ok(())
        },
    )?;
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
    fn pieces_reassemble_the_chunk_and_a_wrong_size_is_named() {
        // Larger than one piece, so the sink sees several, at the right offsets.
        let data: Vec<u8> = (0..(3 * PIECE + 1234)).map(|i| (i * 7 % 251) as u8).collect();
        let id = Addressing::Sha256.id_of(&data);
        let enc = encode(&data, 3, &[]).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut pieces = 0;
        decode_to(
            "x",
            &enc,
            &id,
            Some(data.len()),
            &Addressing::Sha256,
            None,
            |at, piece| {
                out[at as usize..at as usize + piece.len()].copy_from_slice(piece);
                pieces += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, data);
        assert!(pieces >= 4, "{pieces} pieces");

        for wrong in [data.len() - 1, data.len() + 1] {
            let err = decode_to(
                "chunks/ab/x",
                &enc,
                &id,
                Some(wrong),
                &Addressing::Sha256,
                None,
                |_, _| Ok(()),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("chunks/ab/x") && err.contains("manifest says"), "{err}");
        }
        let other = Addressing::Sha256.id_of(b"something else");
        let err = decode_to(
            "chunks/ab/x",
            &enc,
            &other,
            Some(data.len()),
            &Addressing::Sha256,
            None,
            |_, _| Ok(()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not to its name"), "{err}");
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
