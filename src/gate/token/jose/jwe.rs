//! jwe: decrypting a compact JWE (RFC 7516): key management RSA-OAEP(-256), A128/192/256KW,
//! dir, ECDH-ES(+A128/192/256KW) on P-256/384/521; content A128/192/256GCM and
//! A128CBC-HS256/A192CBC-HS384/A256CBC-HS512 (RFC 7518 §4, §5).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, KeyIvInit};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{AesGcm, Nonce, Tag};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::{header, part, string, Key, Refusal, Result, WRONG_KEY};

/// The x coordinate of the shared point of our secret and the sender's uncompressed `point`,
/// `None` if `point` is not on the curve.
macro_rules! agree {
    ($curve:ident, $secret:expr, $point:expr) => {
        $curve::PublicKey::from_sec1_bytes($point)
            .ok()
            .map(|public| {
                $curve::ecdh::diffie_hellman($secret.to_nonzero_scalar(), public.as_affine())
                    .raw_secret_bytes()
                    .to_vec()
            })
    };
}

const UNDECRYPTABLE: Refusal = Refusal("the JWE does not decrypt");

/// The plaintext of the JWE `parts` (five), decrypted with `key`.
pub fn decrypt(parts: &[&str], key: &Key) -> Result<Vec<u8>> {
    let header = header(parts[0])?;
    let alg = string(&header, "alg")?;
    let enc = Enc::named(string(&header, "enc")?)?;
    let encrypted_key = part(parts[1])?;
    let iv = part(parts[2])?;
    let ciphertext = part(parts[3])?;
    let tag = part(parts[4])?;
    let cek = content_key(alg, enc, &header, &encrypted_key, key)?;
    if cek.len() != enc.key_len() {
        return Err(UNDECRYPTABLE);
    }
    // The additional data is the protected header as it travels (RFC 7516 §5.2 step 14).
    enc.decrypt(&cek, &iv, parts[0].as_bytes(), &ciphertext, &tag)
}

/// The content encryption algorithms.
#[derive(Debug, Clone, Copy)]
enum Enc {
    Gcm(usize),
    CbcHs(usize),
}

impl Enc {
    fn named(enc: &str) -> Result<Enc> {
        Ok(match enc {
            "A128GCM" => Enc::Gcm(16),
            "A192GCM" => Enc::Gcm(24),
            "A256GCM" => Enc::Gcm(32),
            "A128CBC-HS256" => Enc::CbcHs(32),
            "A192CBC-HS384" => Enc::CbcHs(48),
            "A256CBC-HS512" => Enc::CbcHs(64),
            _ => return Err(Refusal("an unknown JWE enc")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Enc::Gcm(16) => "A128GCM",
            Enc::Gcm(24) => "A192GCM",
            Enc::Gcm(_) => "A256GCM",
            Enc::CbcHs(32) => "A128CBC-HS256",
            Enc::CbcHs(48) => "A192CBC-HS384",
            Enc::CbcHs(_) => "A256CBC-HS512",
        }
    }

    fn key_len(self) -> usize {
        match self {
            Enc::Gcm(len) | Enc::CbcHs(len) => len,
        }
    }

    fn decrypt(self, cek: &[u8], iv: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Result<Vec<u8>> {
        match self {
            Enc::Gcm(16) => gcm::<aes::Aes128>(cek, iv, aad, ct, tag),
            Enc::Gcm(24) => gcm::<aes::Aes192>(cek, iv, aad, ct, tag),
            Enc::Gcm(_) => gcm::<aes::Aes256>(cek, iv, aad, ct, tag),
            Enc::CbcHs(32) => cbc_hs::<aes::Aes128, Hmac<Sha256>>(cek, iv, aad, ct, tag),
            Enc::CbcHs(48) => cbc_hs::<aes::Aes192, Hmac<Sha384>>(cek, iv, aad, ct, tag),
            Enc::CbcHs(_) => cbc_hs::<aes::Aes256, Hmac<Sha512>>(cek, iv, aad, ct, tag),
        }
    }
}

fn gcm<C>(cek: &[u8], iv: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Result<Vec<u8>>
where
    AesGcm<C, aes_gcm::aead::consts::U12>: aes_gcm::aead::KeyInit + AeadInOut,
    C: aes::cipher::BlockCipherEncrypt,
{
    let cipher =
        AesGcm::<C, aes_gcm::aead::consts::U12>::new_from_slice(cek).map_err(|_| UNDECRYPTABLE)?;
    let nonce = Nonce::try_from(iv).map_err(|_| UNDECRYPTABLE)?;
    let tag = Tag::try_from(tag).map_err(|_| UNDECRYPTABLE)?;
    let mut plaintext = ct.to_vec();
    cipher
        .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), &tag)
        .map_err(|_| UNDECRYPTABLE)?;
    Ok(plaintext)
}

/// AES-CBC with HMAC-SHA-2 (RFC 7518 §5.2): the first half of the key MACs, the second
/// encrypts; the tag is the MAC's first half, compared (in constant time) before any
/// decryption, so a padding error is never reached with a forged ciphertext.
fn cbc_hs<C, M>(cek: &[u8], iv: &[u8], aad: &[u8], ct: &[u8], tag: &[u8]) -> Result<Vec<u8>>
where
    C: aes::cipher::BlockCipherDecrypt<BlockSize = aes::cipher::consts::U16> + aes::cipher::KeyInit,
    M: Mac + KeyInit,
{
    let (mac_key, enc_key) = cek.split_at(cek.len() / 2);
    if tag.len() != mac_key.len() {
        return Err(UNDECRYPTABLE);
    }
    let mut mac = <M as KeyInit>::new_from_slice(mac_key).map_err(|_| UNDECRYPTABLE)?;
    mac.update(aad);
    mac.update(iv);
    mac.update(ct);
    mac.update(&((aad.len() as u64) * 8).to_be_bytes());
    mac.verify_truncated_left(tag).map_err(|_| UNDECRYPTABLE)?;
    let decryptor = cbc::Decryptor::<C>::new_from_slices(enc_key, iv).map_err(|_| UNDECRYPTABLE)?;
    let mut plaintext = ct.to_vec();
    let len = decryptor
        .decrypt_padded::<Pkcs7>(&mut plaintext)
        .map_err(|_| UNDECRYPTABLE)?
        .len();
    plaintext.truncate(len);
    Ok(plaintext)
}

/// The content encryption key, by the key management `alg`.
fn content_key(
    alg: &str,
    enc: Enc,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &Key,
) -> Result<Vec<u8>> {
    match (alg, key) {
        ("dir", Key::Oct(secret)) => {
            if !encrypted_key.is_empty() {
                return Err(Refusal("dir with an encrypted key"));
            }
            Ok(secret.clone())
        }
        ("A128KW", Key::Oct(kek)) if kek.len() == 16 => unwrap::<aes::Aes128>(kek, encrypted_key),
        ("A192KW", Key::Oct(kek)) if kek.len() == 24 => unwrap::<aes::Aes192>(kek, encrypted_key),
        ("A256KW", Key::Oct(kek)) if kek.len() == 32 => unwrap::<aes::Aes256>(kek, encrypted_key),
        (
            "RSA-OAEP",
            Key::Rsa {
                private: Some(private),
                ..
            },
        ) => Ok(oaep(
            private.decrypt(rsa::Oaep::<sha1::Sha1>::new(), encrypted_key),
            enc,
        )),
        (
            "RSA-OAEP-256",
            Key::Rsa {
                private: Some(private),
                ..
            },
        ) => Ok(oaep(
            private.decrypt(rsa::Oaep::<Sha256>::new(), encrypted_key),
            enc,
        )),
        ("ECDH-ES" | "ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW", _) => {
            ecdh_es(alg, enc, header, encrypted_key, key)
        }
        ("dir" | "A128KW" | "A192KW" | "A256KW" | "RSA-OAEP" | "RSA-OAEP-256", _) => Err(WRONG_KEY),
        _ => Err(Refusal("an unknown JWE alg")),
    }
}

fn unwrap<C>(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>>
where
    aes_kw::AesKw<C>: aes::cipher::KeyInit,
    C: aes::cipher::BlockCipherDecrypt<BlockSize = aes::cipher::consts::U16>
        + aes::cipher::BlockCipherEncrypt,
{
    let kw =
        <aes_kw::AesKw<C> as aes::cipher::KeyInit>::new_from_slice(kek).map_err(|_| WRONG_KEY)?;
    let mut buf = vec![0; wrapped.len()];
    let len = kw
        .unwrap_key(wrapped, &mut buf)
        .map_err(|_| UNDECRYPTABLE)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// A failed OAEP decryption goes on with a random key of the right length, so it fails at
/// the tag like any forged JWE and the time it takes tells nothing of the padding
/// (RFC 7516 §11.5, the defence against Bleichenbacher- and Manger-style oracles).
fn oaep(decrypted: rsa::errors::Result<Vec<u8>>, enc: Enc) -> Vec<u8> {
    match decrypted {
        Ok(cek) if cek.len() == enc.key_len() => cek,
        _ => {
            let mut random = vec![0; enc.key_len()];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
                .is_err()
            {
                random.clear();
            }
            random
        }
    }
}

/// ECDH-ES (RFC 7518 §4.6): the agreed secret through the Concat KDF is the content key
/// (`ECDH-ES`) or the key that unwraps it (`ECDH-ES+A*KW`). The sender's `epk` must be a
/// point on our key's curve (the point decoder checks it: no invalid-curve attack).
fn ecdh_es(
    alg: &str,
    enc: Enc,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &Key,
) -> Result<Vec<u8>> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or(Refusal("ECDH-ES without an epk"))?;
    let coordinate = |name: &str| -> Result<Vec<u8>> {
        part(
            epk.get(name)
                .and_then(Value::as_str)
                .ok_or(Refusal("a malformed epk"))?,
        )
    };
    if epk.get("kty").and_then(Value::as_str) != Some("EC") {
        return Err(Refusal("a malformed epk"));
    }
    let crv = epk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let mut point = vec![0x04];
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    let agreed = match (crv, key) {
        (
            "P-256",
            Key::P256 {
                secret: Some(secret),
                ..
            },
        ) => agree!(p256, secret, &point),
        (
            "P-384",
            Key::P384 {
                secret: Some(secret),
                ..
            },
        ) => agree!(p384, secret, &point),
        (
            "P-521",
            Key::P521 {
                secret: Some(secret),
                ..
            },
        ) => agree!(p521, secret, &point),
        _ => return Err(WRONG_KEY),
    }
    .ok_or(Refusal("the epk is not a point of the key's curve"))?;
    let (algorithm_id, len) = match alg {
        "ECDH-ES" => (enc.name(), enc.key_len()),
        "ECDH-ES+A128KW" => (alg, 16),
        "ECDH-ES+A192KW" => (alg, 24),
        _ => (alg, 32),
    };
    let party = |name: &str| -> Result<Vec<u8>> {
        match header.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(text)) => part(text),
            Some(_) => Err(Refusal("a malformed apu or apv")),
        }
    };
    let derived = concat_kdf(&agreed, algorithm_id, &party("apu")?, &party("apv")?, len);
    match alg {
        "ECDH-ES" => {
            if !encrypted_key.is_empty() {
                return Err(Refusal("ECDH-ES with an encrypted key"));
            }
            Ok(derived)
        }
        "ECDH-ES+A128KW" => unwrap::<aes::Aes128>(&derived, encrypted_key),
        "ECDH-ES+A192KW" => unwrap::<aes::Aes192>(&derived, encrypted_key),
        _ => unwrap::<aes::Aes256>(&derived, encrypted_key),
    }
}

/// The Concat KDF of NIST SP 800-56A with SHA-256, as RFC 7518 §4.6.2 fills it in.
pub(super) fn concat_kdf(
    z: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    len: usize,
) -> Vec<u8> {
    let mut other = Vec::new();
    for field in [algorithm_id.as_bytes(), apu, apv] {
        other.extend((field.len() as u32).to_be_bytes());
        other.extend(field);
    }
    other.extend(((len * 8) as u32).to_be_bytes());
    let mut out = Vec::with_capacity(len + 32);
    let mut round = 1u32;
    while out.len() < len {
        let mut hash = Sha256::new();
        hash.update(round.to_be_bytes());
        hash.update(z);
        hash.update(&other);
        out.extend(hash.finalize());
        round += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decrypted key of the wrong length is replaced, as a failed decryption is, by a
    /// random key of the right one: the JWE then fails at its tag, as a forged one does.
    #[test]
    fn a_wrong_oaep_result_becomes_a_random_key_of_the_right_length() {
        let enc = Enc::named("A128GCM").unwrap();
        let right = vec![7; 16];
        assert_eq!(oaep(Ok(right.clone()), enc), right);
        for wrong in [
            Ok(vec![7; 15]),
            Ok(vec![7; 32]),
            Err(rsa::errors::Error::Decryption),
        ] {
            let key = oaep(wrong, enc);
            assert_eq!(key.len(), 16);
            assert_ne!(key, right);
        }
    }
}
