//! How zkCli prints things: Stat blocks, Java `Date.toString`, ACL ids, permission strings,
//! quota records (`StatsTrack`), hex dumps, and the client-side path check with its messages.

use ferrozk_proto::{Id, Stat};

/// The eleven `name = value` lines zkCli prints for a Stat.
pub fn stat_lines(s: &Stat) -> Vec<String> {
    vec![
        format!("cZxid = 0x{:x}", s.czxid as u64),
        format!("ctime = {}", java_date(s.ctime)),
        format!("mZxid = 0x{:x}", s.mzxid as u64),
        format!("mtime = {}", java_date(s.mtime)),
        format!("pZxid = 0x{:x}", s.pzxid as u64),
        format!("cversion = {}", s.cversion),
        format!("dataVersion = {}", s.version),
        format!("aclVersion = {}", s.aversion),
        format!("ephemeralOwner = 0x{:x}", s.ephemeral_owner as u64),
        format!("dataLength = {}", s.data_length),
        format!("numChildren = {}", s.num_children),
    ]
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Java's `new Date(ms).toString()`: `EEE MMM dd HH:mm:ss zzz yyyy` in the local time zone.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    // SAFETY: tzset and localtime_r only read the environment and the zone files, and write
    // into the `tm` we own; tm_zone points into static storage owned by libc.
    unsafe {
        static TZ: std::sync::Once = std::sync::Once::new();
        TZ.call_once(|| tzset());
        let t = secs as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return format!("{ms}");
        }
        let zone = if tm.tm_zone.is_null() {
            "UTC".to_string()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned()
        };
        format!(
            "{} {} {:02} {:02}:{:02}:{:02} {} {}",
            DAYS[(tm.tm_wday as usize) % 7],
            MONTHS[(tm.tm_mon as usize) % 12],
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            zone,
            tm.tm_year as i64 + 1900
        )
    }
}

extern "C" {
    fn tzset();
}

/// jute's CSV form of a string field, as `Id.toString()` writes it.
fn csv_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("%00"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            ',' => out.push_str("%2C"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// `Id.toString()`: `'scheme,'id` followed by a newline (jute's CSV record end).
pub fn id_to_string(id: &Id) -> String {
    format!("{},{}\n", csv_string(&id.scheme), csv_string(&id.id))
}

/// `ZKUtil.getPermString`: the letters of the permissions, in the order c d r w a.
pub fn perm_string(perms: i32) -> String {
    use ferrozk_proto::codes::perms::*;
    let mut p = String::new();
    for (bit, c) in [(CREATE, 'c'), (DELETE, 'd'), (READ, 'r'), (WRITE, 'w'), (ADMIN, 'a')] {
        if perms & bit != 0 {
            p.push(c);
        }
    }
    p
}

/// `PathUtils.validatePath`: the message is what zkCli prints.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("Path length must be > 0".into());
    }
    let chars: Vec<u16> = path.encode_utf16().collect();
    if chars[0] != '/' as u16 {
        return Err("Path must start with / character".into());
    }
    if chars.len() == 1 {
        return Ok(());
    }
    if chars[chars.len() - 1] == '/' as u16 {
        return Err("Path must not end with / character".into());
    }
    let slash = '/' as u16;
    let dot = '.' as u16;
    let mut reason = None;
    let mut lastc = slash;
    for i in 1..chars.len() {
        let c = chars[i];
        if c == 0 {
            reason = Some(format!("null character not allowed @{i}"));
            break;
        } else if c == slash && lastc == slash {
            reason = Some(format!("empty node name specified @{i}"));
            break;
        } else if c == dot && lastc == dot {
            if chars[i - 2] == slash && (i + 1 == chars.len() || chars[i + 1] == slash) {
                reason = Some(format!("relative paths not allowed @{i}"));
                break;
            }
        } else if c == dot {
            if chars[i - 1] == slash && (i + 1 == chars.len() || chars[i + 1] == slash) {
                reason = Some(format!("relative paths not allowed @{i}"));
                break;
            }
        } else if (c > 0 && c <= 0x1f) || (0x7f..=0x9f).contains(&c) || (0xd800..=0xf8ff).contains(&c) || c >= 0xfff0 {
            reason = Some(format!("invalid character @{i}"));
            break;
        }
        lastc = c;
    }
    match reason {
        Some(r) => Err(format!("Invalid path string \"{path}\" caused by {r}")),
        None => Ok(()),
    }
}

/// `PathUtils.validatePath(path, isSequential)`: a sequential path is checked with a digit after it.
pub fn validate_create_path(path: &str, sequential: bool) -> Result<(), String> {
    if sequential {
        validate_path(&format!("{path}1"))
    } else {
        validate_path(path)
    }
}

/// Sorts as Java's `String.compareTo` does (UTF-16 code units).
pub fn java_sort(v: &mut [String]) {
    v.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
}

pub use ferrozk_proto::StatsTrack;

/// Netty's `ByteBufUtil.prettyHexDump`, which `get -x` prints.
pub fn hex_dump(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    const BORDER: &str = "+--------+-------------------------------------------------+----------------+";
    let mut s = String::new();
    s.push_str("         +-------------------------------------------------+\n");
    s.push_str("         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n");
    s.push_str(BORDER);
    for (row, chunk) in data.chunks(16).enumerate() {
        s.push('\n');
        s.push_str(&format!("|{:08x}|", (row as u64 * 16) & 0xffff_ffff));
        for b in chunk {
            s.push_str(&format!(" {b:02x}"));
        }
        for _ in chunk.len()..16 {
            s.push_str("   ");
        }
        s.push_str(" |");
        for &b in chunk {
            s.push(if b <= 0x1f || b >= 0x7f { '.' } else { b as char });
        }
        for _ in chunk.len()..16 {
            s.push(' ');
        }
        s.push('|');
    }
    s.push('\n');
    s.push_str(BORDER);
    s
}

/// Java's `new String(bytes, UTF_8)`: malformed input becomes U+FFFD.
pub fn utf8(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_like_path_utils() {
        assert_eq!(validate_path("bad").unwrap_err(), "Path must start with / character");
        assert_eq!(validate_path("/a/").unwrap_err(), "Path must not end with / character");
        assert_eq!(validate_path("//y").unwrap_err(), "Invalid path string \"//y\" caused by empty node name specified @1");
        assert_eq!(
            validate_path("/x/../y").unwrap_err(),
            "Invalid path string \"/x/../y\" caused by relative paths not allowed @4"
        );
        assert!(validate_path("/").is_ok());
        assert!(validate_path("/a/b.c/..d").is_ok());
        assert!(validate_create_path("/s/", true).is_ok());
    }

    #[test]
    fn stats_track_round_trips_in_zookeepers_format() {
        let mut q = StatsTrack::default();
        q.set(StatsTrack::COUNT, 3);
        q.set(StatsTrack::BYTES, -1);
        q.set(StatsTrack::COUNT_HARD, -1);
        q.set(StatsTrack::BYTES_HARD, 30);
        let s = q.to_string();
        assert_eq!(s, "count=3,bytes=-1=;byteHardLimit=30;countHardLimit=-1");
        assert_eq!(StatsTrack::parse(&s).unwrap().to_string(), s);
        assert_eq!(StatsTrack::parse("count=1,bytes=0").unwrap().to_string(), "count=1,bytes=0");
    }

    #[test]
    fn ids_perms_and_dumps() {
        let id = Id { scheme: "digest".into(), id: "u:a,b".into() };
        assert_eq!(id_to_string(&id), "'digest,'u:a%2Cb\n");
        assert_eq!(perm_string(31), "cdrwa");
        assert_eq!(perm_string(1 | 16), "ra");
        let d = hex_dump(b"hello");
        assert!(d.contains("|00000000| 68 65 6c 6c 6f                                  |hello           |"), "{d}");
    }
}
