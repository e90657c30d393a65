//! API keys: 24 random bytes from the OS CSPRNG as 48 lowercase hex characters,
//! prefixed by role. Only the SHA-256 of a key is ever stored or compared.

use rand::rngs::OsRng;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use broodlink_protocol::Role;

/// Makes a new raw key for an agent of `role`.
pub fn generate(role: Role) -> String {
    let mut bytes = [0u8; 24];
    // The OS generator failing means the machine cannot make secrets at all.
    OsRng.try_fill_bytes(&mut bytes).expect("the operating system's random number generator failed");
    let prefix = match role {
        Role::Controller => "bl_k_ctrl_",
        Role::Participant => "bl_k_",
    };
    let mut key = String::with_capacity(prefix.len() + 48);
    key.push_str(prefix);
    push_hex(&mut key, &bytes);
    key
}

/// Whether `key` has the shape [`generate`] gives a controller's key.
pub fn is_controller_key(key: &str) -> bool {
    key.strip_prefix("bl_k_ctrl_")
        .is_some_and(|hex| hex.len() == 48 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &digest);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let ctrl = generate(Role::Controller);
        let part = generate(Role::Participant);
        assert!(ctrl.starts_with("bl_k_ctrl_") && ctrl.len() == 10 + 48, "{ctrl}");
        assert!(part.starts_with("bl_k_") && part.len() == 5 + 48, "{part}");
        for key in [&ctrl[10..], &part[5..]] {
            assert!(key.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        }
        assert_ne!(generate(Role::Participant), part);
        assert!(is_controller_key(&ctrl));
        let upper_hex = format!("bl_k_ctrl_{}", ctrl[10..].to_uppercase());
        for not_one in [&part[..], &ctrl[..57], "bl_k_ctrl_", &upper_hex, &format!("{ctrl}0")] {
            assert!(!is_controller_key(not_one), "{not_one}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
