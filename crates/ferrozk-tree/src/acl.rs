//! ACL evaluation and the built-in authentication schemes (world, auth, digest, ip, super).

use ferrozk_proto::codes::perms;
use ferrozk_proto::{Acl, ErrorCode, Id};

pub fn id(scheme: &str, id: &str) -> Id {
    Id { scheme: scheme.to_string(), id: id.to_string() }
}

/// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: id("world", "anyone") }]
}

/// `world:anyone` with READ only (`ZooDefs.Ids.READ_ACL_UNSAFE`).
pub fn read_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::READ, id: id("world", "anyone") }]
}

pub use ferrozk_proto::auth::digest;

/// Whether `scheme` has a server-side provider here (`ProviderRegistry`); `x509` only where TLS
/// clients are served.
fn known_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "ip" | "x509")
}

/// The length of Java's `String.split` result, which drops trailing empty strings.
fn java_split_len(s: &str, sep: char) -> usize {
    let parts: Vec<&str> = s.split(sep).collect();
    let mut n = parts.len();
    while n > 0 && parts[n - 1].is_empty() {
        n -= 1;
    }
    n
}

/// `ServerAuthenticationProvider.isValid` for an ACL id of `scheme`.
fn valid_id(scheme: &str, id: &str, x509: bool) -> bool {
    match scheme {
        "digest" => java_split_len(id, ':') == 2,
        "ip" => parse_ip_spec(id).is_some(),
        // An X.500 name: at least one attribute=value.
        "x509" => x509 && id.contains('='),
        _ => false,
    }
}

/// Whether a scheme's identities count as authenticated for the `auth` ACL scheme.
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "x509" | "sasl")
}

/// Java's `String.hashCode` (over UTF-16 units).
fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(u as i32);
    }
    h
}

/// The order in which ZooKeeper iterates a connection's identities: they live in a
/// `ConcurrentHashMap`-backed set, so `auth` ACLs expand, and whoAmI lists, in hash-bin order
/// (insertion order within a bin). Clients can see this order, so it is reproduced.
pub fn java_set_order(ids: &[Id]) -> Vec<&Id> {
    // The table starts at 16 bins and doubles when it passes three quarters full.
    let mut bins = 16usize;
    while ids.len() > bins * 3 / 4 {
        bins *= 2;
    }
    let bin = |id: &Id| {
        let h = 37i32
            .wrapping_mul(37i32.wrapping_mul(17).wrapping_add(java_string_hash(&id.scheme)))
            .wrapping_add(java_string_hash(&id.id));
        let spread = (h ^ ((h as u32) >> 16) as i32) & 0x7fff_ffff;
        spread as usize & (bins - 1)
    };
    let mut v: Vec<(usize, usize, &Id)> = ids.iter().enumerate().map(|(i, id)| (bin(id), i, id)).collect();
    v.sort_by_key(|(bin, at, _)| (*bin, *at));
    v.into_iter().map(|(_, _, id)| id).collect()
}

/// `PrepRequestProcessor.fixupACL`: drops duplicates, rejects malformed ids, and expands `auth`
/// into the requester's authenticated identities.
pub fn fixup_acl(auth: &[Id], acls: &[Acl], x509: bool) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acls {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        if a.id.scheme.is_empty() {
            return Err(ErrorCode::InvalidAcl);
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == "auth" {
            let mut any = false;
            for cid in java_set_order(auth) {
                if is_authenticated_scheme(&cid.scheme) {
                    any = true;
                    out.push(Acl { perms: a.perms, id: cid.clone() });
                }
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if !valid_id(&a.id.scheme, &a.id.id, x509) {
            return Err(ErrorCode::InvalidAcl);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// `ZooKeeperServer.checkACL`: may identities `auth` do `perm` on a node with `acl`?
pub fn check(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || auth.iter().any(|a| a.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        if !known_scheme(&a.id.scheme) {
            continue;
        }
        for who in auth.iter().filter(|w| w.scheme == a.id.scheme) {
            if matches(&a.id.scheme, &who.id, &a.id.id) {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

fn matches(scheme: &str, id: &str, acl_expr: &str) -> bool {
    match scheme {
        "ip" => ip_matches(id, acl_expr),
        _ => id == acl_expr,
    }
}

/// Parses `addr[/bits]` (IPv4 or IPv6) into address bytes and a prefix length.
fn parse_ip_spec(spec: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match spec.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<usize>().ok()?)),
        None => (spec, None),
    };
    // IPv4 only, as ZooKeeper 3.8's IPAuthenticationProvider.
    let bytes: Vec<u8> = addr.parse::<std::net::Ipv4Addr>().ok()?.octets().to_vec();
    let max = bytes.len() * 8;
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    Some((bytes, bits))
}

/// `IPAuthenticationProvider.matches`: the client address `id` lies in the `acl_expr` network.
fn ip_matches(id: &str, acl_expr: &str) -> bool {
    let (Some((net, bits)), Some((addr, _))) = (parse_ip_spec(acl_expr), parse_ip_spec(id)) else {
        return false;
    };
    if net.len() != addr.len() {
        return false;
    }
    for i in 0..bits {
        let mask = 0x80u8 >> (i % 8);
        if (net[i / 8] & mask) != (addr[i / 8] & mask) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // kazoo's harness uses super:test with this digest.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn identities_iterate_in_java_hash_set_order() {
        // ZooKeeper 3.8 (zkCli whoami after addauth user1, alice, bob, carol in that order)
        // lists carol, alice, user1, ip, bob.
        let ids: Vec<Id> = std::iter::once(id("ip", "127.0.0.1"))
            .chain(["user1:pw", "alice:a", "bob:b", "carol:c"].iter().map(|u| id("digest", &digest(u))))
            .collect();
        let order: Vec<&str> = java_set_order(&ids).iter().map(|i| i.id.split(':').next().unwrap()).collect();
        assert_eq!(order, vec!["carol", "alice", "user1", "127.0.0.1", "bob"]);
    }

    #[test]
    fn acl_checks() {
        let digest_acl = vec![Acl { perms: perms::READ, id: id("digest", &digest("u:p")) }];
        let me = vec![id("ip", "127.0.0.1"), id("digest", &digest("u:p"))];
        let other = vec![id("ip", "127.0.0.1"), id("digest", &digest("u:q"))];
        assert_eq!(check(&digest_acl, perms::READ, &me), Ok(()));
        assert_eq!(check(&digest_acl, perms::WRITE, &me), Err(ErrorCode::NoAuth));
        assert_eq!(check(&digest_acl, perms::READ, &other), Err(ErrorCode::NoAuth));
        assert_eq!(check(&digest_acl, perms::WRITE, &[id("super", "")]), Ok(()));
        let ip_acl = vec![Acl { perms: perms::ALL, id: id("ip", "127.0.0.0/8") }];
        assert_eq!(check(&ip_acl, perms::READ, &me), Ok(()));
        assert_eq!(check(&ip_acl, perms::READ, &[id("ip", "10.0.0.1")]), Err(ErrorCode::NoAuth));
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_ids() {
        let auth_acl = vec![Acl { perms: perms::ALL, id: id("auth", "") }];
        assert_eq!(fixup_acl(&[id("ip", "127.0.0.1")], &auth_acl, false), Err(ErrorCode::InvalidAcl));
        let me = vec![id("ip", "127.0.0.1"), id("digest", "u:x")];
        assert_eq!(fixup_acl(&me, &auth_acl, false).unwrap(), vec![Acl { perms: perms::ALL, id: id("digest", "u:x") }]);
        assert!(fixup_acl(&me, &[], false).is_err());
        assert!(fixup_acl(&me, &[Acl { perms: 1, id: id("ip", "300.1.1.1") }], false).is_err());
        assert!(fixup_acl(&me, &[Acl { perms: 1, id: id("digest", "nocolon") }], false).is_err());
        assert!(fixup_acl(&me, &[Acl { perms: 1, id: id("foo", "bar") }], false).is_err());
        assert!(fixup_acl(&me, &[Acl { perms: 1, id: id("digest", "u:") }], false).is_err());
        assert!(fixup_acl(&me, &[Acl { perms: 1, id: id("world", "someone") }], false).is_err());
    }
}
