//! Znode path rules, exactly as ZooKeeper's `PathUtils.validatePath` states them.

/// Why a path is not a valid znode path.
pub fn path_error(path: &str) -> Option<&'static str> {
    // '/', '.' and NUL are ASCII, and an ASCII byte never occurs inside a multi-byte UTF-8
    // character: the checks around them look at bytes, and nothing is allocated.
    let b = path.as_bytes();
    if b.is_empty() {
        return Some("Path length must be > 0");
    }
    if b[0] != b'/' {
        return Some("Path must start with / character");
    }
    if b.len() == 1 {
        return None;
    }
    if b[b.len() - 1] == b'/' {
        return Some("Path must not end with / character");
    }
    let ends_name = |i: usize| i + 1 == b.len() || b[i + 1] == b'/';
    let mut last = '/';
    for (i, c) in path.char_indices().skip(1) {
        if c == '\0' {
            return Some("null character not allowed");
        } else if c == '/' && last == '/' {
            return Some("empty node name specified");
        } else if c == '.' && last == '.' {
            if b[i - 2] == b'/' && ends_name(i) {
                return Some("relative paths not allowed");
            }
        } else if c == '.' {
            if b[i - 1] == b'/' && ends_name(i) {
                return Some("relative paths not allowed");
            }
        } else if is_invalid_char(c) {
            return Some("invalid character");
        }
        last = c;
    }
    None
}

/// Java checks UTF-16 units; a character outside the BMP is a surrogate pair there, which falls
/// in the rejected U+D800..U+F8FF range.
fn is_invalid_char(c: char) -> bool {
    let u = c as u32;
    (u > 0 && u <= 0x1f)
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        || u > 0xffff
}

pub fn is_valid(path: &str) -> bool {
    path_error(path).is_none()
}

/// Splits at the last '/': ("/a", "b") for "/a/b", ("", "a") for "/a". `None` without a '/'.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    Some((&path[..i], &path[i + 1..]))
}

/// The parent's key in the tree ("" and "/" both name the root).
pub fn parent_key(parent: &str) -> &str {
    if parent.is_empty() {
        "/"
    } else {
        parent
    }
}

/// The child's full path under `parent`.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_path_rules() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/..a", "/a/...", "/ü", "/ü..", "/ü.", "/.ü", "/ü/.ü/ü..ü"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in
            ["", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/a\0b", "/\u{1}", "/\u{e000}", "/\u{1F600}"]
        {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert_eq!(path_error("/ü/.."), Some("relative paths not allowed"));
        assert_eq!(path_error("/ü/./b"), Some("relative paths not allowed"));
        assert_eq!(path_error("/ü//b"), Some("empty node name specified"));
        assert_eq!(path_error("/ü\0"), Some("null character not allowed"));
        assert_eq!(path_error("/ü\u{fff5}"), Some("invalid character"));
        assert_eq!(split("/a/b"), Some(("/a", "b")));
        assert_eq!(split("/a"), Some(("", "a")));
        assert_eq!(split("a"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
