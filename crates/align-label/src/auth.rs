//! Login tokens: 32 random bytes from the operating system's RNG, shown once as hex, stored only as
//! their SHA-256 hash. A request carries the token as `Authorization: Bearer <token>` or in the
//! `align_label` cookie set by the login page; the server hashes it and looks the hash up.

use rand::rngs::OsRng;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Name of the session cookie (HttpOnly, SameSite=Strict).
pub const COOKIE: &str = "align_label";

/// A fresh token: 64 hex characters (256 bits) from the OS RNG.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    hex::encode(bytes)
}

/// The SHA-256 of a token, hex; what the database stores and looks up.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a string has the shape of a token (64 lowercase hex digits); anything else is refused
/// before it reaches the database.
pub fn looks_like_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The token of a request: the bearer token if present, else the session cookie.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    use axum::http::header::{AUTHORIZATION, COOKIE as COOKIE_HEADER};
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hashes_are_sha256() {
        let a = new_token();
        let b = new_token();
        assert!(looks_like_token(&a) && looks_like_token(&b));
        assert_ne!(a, b);
        // echo -n abc | sha256sum
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!looks_like_token("ABC"));
        assert!(!looks_like_token(&format!("{}g", &a[..63])));
    }

    #[test]
    fn token_from_bearer_or_cookie() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(token_from_headers(&h), None);
        h.insert("cookie", "x=1; align_label=tok123; y=2".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("tok123"));
        h.insert("authorization", "Bearer beartok".parse().unwrap());
        assert_eq!(token_from_headers(&h).as_deref(), Some("beartok"));
    }
}
