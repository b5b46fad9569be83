//! jws: verifying a compact JWS (RFC 7515) with HS/RS/PS/ES 256/384/512 or EdDSA (Ed25519).

use hmac::{Hmac, KeyInit, Mac};
use ring::signature::{
    RsaParameters, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384,
    RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384,
    RSA_PSS_2048_8192_SHA512,
};
use rsa::signature::Verifier;
use sha2::{Sha256, Sha384, Sha512};

use super::key::RingRsa;
use super::{header, part, string, Key, Refusal, Result, WRONG_KEY};

/// ECDSA over a curve crate: the JWS signature is `r || s`, each the field's size.
macro_rules! ecdsa {
    ($curve:ident, $public:expr, $input:expr, $signature:expr) => {
        match $curve::ecdsa::Signature::from_slice($signature) {
            Ok(signature) => $curve::ecdsa::VerifyingKey::from($public)
                .verify($input, &signature)
                .is_ok(),
            Err(_) => false,
        }
    };
}

const BAD_SIGNATURE: Refusal = Refusal("the signature does not verify");

/// The payload of the JWS `parts` (three), if its signature verifies with `key`.
pub fn verify(parts: &[&str], key: &Key) -> Result<Vec<u8>> {
    let header = header(parts[0])?;
    if header.contains_key("enc") {
        return Err(Refusal("a JWS header with enc"));
    }
    let alg = string(&header, "alg")?;
    let signature = part(parts[2])?;
    let input = format!("{}.{}", parts[0], parts[1]);
    let input = input.as_bytes();
    let ok = match (alg, key) {
        ("none", _) => return Err(Refusal("alg none")),
        ("HS256", Key::Oct(secret)) => hmac::<Hmac<Sha256>>(secret, 32, input, &signature)?,
        ("HS384", Key::Oct(secret)) => hmac::<Hmac<Sha384>>(secret, 48, input, &signature)?,
        ("HS512", Key::Oct(secret)) => hmac::<Hmac<Sha512>>(secret, 64, input, &signature)?,
        ("RS256", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PKCS1_2048_8192_SHA256, input, &signature),
            None => pkcs1::<Sha256>(public, input, &signature),
        },
        ("RS384", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PKCS1_2048_8192_SHA384, input, &signature),
            None => pkcs1::<Sha384>(public, input, &signature),
        },
        ("RS512", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PKCS1_2048_8192_SHA512, input, &signature),
            None => pkcs1::<Sha512>(public, input, &signature),
        },
        ("PS256", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PSS_2048_8192_SHA256, input, &signature),
            None => pss::<Sha256>(public, input, &signature),
        },
        ("PS384", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PSS_2048_8192_SHA384, input, &signature),
            None => pss::<Sha384>(public, input, &signature),
        },
        ("PS512", Key::Rsa { public, ring, .. }) => match ring {
            Some(ring) => ring_rsa(ring, &RSA_PSS_2048_8192_SHA512, input, &signature),
            None => pss::<Sha512>(public, input, &signature),
        },
        ("ES256", Key::P256 { public, .. }) => {
            ecdsa!(p256, public, input, &signature)
        }
        ("ES384", Key::P384 { public, .. }) => {
            ecdsa!(p384, public, input, &signature)
        }
        ("ES512", Key::P521 { public, .. }) => {
            ecdsa!(p521, public, input, &signature)
        }
        ("EdDSA" | "Ed25519", Key::Ed25519(public)) => {
            match ed25519_dalek::Signature::from_slice(&signature) {
                Ok(signature) => public.verify_strict(input, &signature).is_ok(),
                Err(_) => false,
            }
        }
        (
            "HS256" | "HS384" | "HS512" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
            | "ES256" | "ES384" | "ES512" | "EdDSA" | "Ed25519",
            _,
        ) => return Err(WRONG_KEY),
        _ => return Err(Refusal("an unknown JWS alg")),
    };
    if !ok {
        return Err(BAD_SIGNATURE);
    }
    part(parts[1])
}

/// HMAC, compared in constant time; a key shorter than the hash is refused, as RFC 7518 §3.2
/// requires and jwcrypto does.
fn hmac<M: Mac + KeyInit>(secret: &[u8], min: usize, input: &[u8], tag: &[u8]) -> Result<bool> {
    if secret.len() < min {
        return Err(Refusal("the HMAC key is shorter than the hash"));
    }
    let mut mac = <M as KeyInit>::new_from_slice(secret).map_err(|_| WRONG_KEY)?;
    mac.update(input);
    Ok(mac.verify_slice(tag).is_ok())
}

/// RS* and PS* with ring, for the keys it takes (2048 to 8192 bits): PSS with a salt as long
/// as the hash, as RFC 7518 §3.5 asks and jwcrypto signs and verifies.
fn ring_rsa(key: &RingRsa, params: &'static RsaParameters, input: &[u8], signature: &[u8]) -> bool {
    key.verify(params, input, signature).is_ok()
}

/// RS* and PS* with the rsa crate: the keys ring refuses (under 2048 bits), which the
/// reference accepts.
fn pkcs1<D>(public: &rsa::PublicKey, input: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid + sha2::digest::FixedOutputReset,
    rsa::pkcs1v15::VerifyingKey<D>: Verifier<rsa::pkcs1v15::Signature>,
{
    let Ok(signature) = rsa::pkcs1v15::Signature::try_from(signature) else {
        return false;
    };
    rsa::pkcs1v15::VerifyingKey::<D>::new(public.clone())
        .verify(input, &signature)
        .is_ok()
}

/// PSS with a salt as long as the hash (RFC 7518 §3.5).
fn pss<D>(public: &rsa::PublicKey, input: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
    rsa::pss::VerifyingKey<D>: Verifier<rsa::pss::Signature>,
{
    let Ok(signature) = rsa::pss::Signature::try_from(signature) else {
        return false;
    };
    rsa::pss::VerifyingKey::<D>::new(public.clone())
        .verify(input, &signature)
        .is_ok()
}
