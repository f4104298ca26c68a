//! The `digest` scheme's id, as ZooKeeper's `DigestAuthenticationProvider.generateDigest`
//! makes it: what a server stores for `addauth digest user:password` and what a client puts
//! in an ACL for that user.

use base64::Engine;
use sha1::{Digest, Sha1};

/// `user:base64(sha1("user:password"))` for `user_password` = `user:password`.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digest_is_zookeepers() {
        // zkCli's `super:test` digest, as ZooKeeper's docs and this repository's tests use it.
        assert_eq!(super::digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }
}
