//! Jute binary encoding as Apache ZooKeeper's `BinaryInputArchive`/`BinaryOutputArchive` do it:
//! big-endian integers, length-prefixed buffers and strings (-1 = null), counted vectors.

use std::fmt;

/// Why a record could not be decoded. Decoding never panics; the connection that sent the bytes
/// is answered with an error or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The record needs more bytes than the frame holds.
    Truncated,
    /// A length field is negative (other than -1) or larger than the frame.
    BadLength(i32),
    /// An unknown enumeration value (opcode, create mode, ...).
    BadValue(&'static str, i64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "record truncated"),
            DecodeError::BadLength(n) => write!(f, "unreasonable length {n}"),
            DecodeError::BadValue(what, v) => write!(f, "invalid {what} {v}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// A cursor over one frame's payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn read_i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    pub fn read_bool(&mut self) -> DecodeResult<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length prefix: `None` for -1 (null), an error for other negatives or lengths past the end.
    fn read_len(&mut self) -> DecodeResult<Option<usize>> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 || n as usize > self.remaining() {
            return Err(DecodeError::BadLength(n));
        }
        Ok(Some(n as usize))
    }

    pub fn read_buffer(&mut self) -> DecodeResult<Option<Vec<u8>>> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// A `ustring`; null reads as `None`.
    pub fn read_opt_string(&mut self) -> DecodeResult<Option<String>> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => Ok(Some(decode_java_utf8(self.take(n)?))),
        }
    }

    /// A vector's element count; null reads as 0. Each element takes at least one byte, which
    /// bounds the count by the bytes left and keeps a hostile count from allocating.
    pub fn read_count(&mut self) -> DecodeResult<usize> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(0);
        }
        if n < 0 || n as usize > self.remaining() {
            return Err(DecodeError::BadLength(n));
        }
        Ok(n as usize)
    }
}

/// Decodes bytes from a Java peer: standard UTF-8, plus CESU-8 surrogate pairs (what Java's
/// `BinaryOutputArchive` writes for supplementary characters). Invalid bytes become U+FFFD, as
/// Java's decoder makes them.
pub fn decode_java_utf8(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // A CESU-8 surrogate pair: ED A0-AF xx ED B0-BF xx.
        if i + 6 <= b.len()
            && b[i] == 0xED
            && (0xA0..=0xAF).contains(&b[i + 1])
            && b[i + 3] == 0xED
            && (0xB0..=0xBF).contains(&b[i + 4])
        {
            let hi = 0xD000 | ((b[i + 1] as u32 & 0x3F) << 6) | (b[i + 2] as u32 & 0x3F);
            let lo = 0xD000 | ((b[i + 4] as u32 & 0x3F) << 6) | (b[i + 5] as u32 & 0x3F);
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
            i += 6;
            continue;
        }
        let end = (i + 4).min(b.len());
        match std::str::from_utf8(&b[i..end]) {
            Ok(s) => {
                out.push_str(s);
                i = end;
            }
            Err(e) if e.valid_up_to() > 0 => {
                let n = e.valid_up_to();
                out.push_str(std::str::from_utf8(&b[i..i + n]).unwrap());
                i += n;
            }
            Err(e) => {
                out.push('\u{FFFD}');
                i += e.error_len().unwrap_or(1);
            }
        }
    }
    out
}

/// Encodes a string as Java's `BinaryOutputArchive` does: UTF-8, except that characters outside
/// the Basic Multilingual Plane go out as two 3-byte surrogates (CESU-8).
pub fn write_java_utf8(s: &str, out: &mut Vec<u8>) {
    // Only characters beyond the BMP differ, and in UTF-8 only they have a lead byte of 0xF0
    // or more: a byte scan, not a decode of every character.
    if !s.bytes().any(|b| b >= 0xF0) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        let cp = c as u32;
        if cp < 0x10000 {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        } else {
            let v = cp - 0x10000;
            for unit in [0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)] {
                out.push(0xE0 | (unit >> 12) as u8);
                out.push(0x80 | ((unit >> 6) & 0x3F) as u8);
                out.push(0x80 | (unit & 0x3F) as u8);
            }
        }
    }
}

/// A jute-encodable value.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// A jute-decodable value.
pub trait Decode: Sized {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self>;
}

impl Encode for i32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}
impl Decode for i32 {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.read_i32()
    }
}
impl Encode for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}
impl Decode for i64 {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.read_i64()
    }
}
impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}
impl Decode for bool {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.read_bool()
    }
}

/// `ustring`: null decodes as the empty string, which every place that takes a string treats as
/// invalid exactly where ZooKeeper treats null as invalid.
impl Encode for String {
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        write_java_utf8(self, out);
        let n = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }
}
impl Decode for String {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(r.read_opt_string()?.unwrap_or_default())
    }
}

/// `buffer`: kept as `Option` because ZooKeeper stores and returns null data as null (zkCli
/// prints it as "null"), distinct from empty data.
impl Encode for Option<Vec<u8>> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => (-1i32).encode(out),
            Some(b) => {
                (b.len() as i32).encode(out);
                out.extend_from_slice(b);
            }
        }
    }
}
impl Decode for Option<Vec<u8>> {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.read_buffer()
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as i32).encode(out);
        for x in self {
            x.encode(out);
        }
    }
}
impl<T: Decode> Decode for Vec<T> {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let n = r.read_count()?;
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(T::decode(r)?);
        }
        Ok(v)
    }
}

/// Encodes a value into a fresh buffer.
pub fn to_bytes<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_characters_use_cesu8_both_ways() {
        let s = "a\u{1F600}b".to_string();
        let bytes = to_bytes(&s);
        assert_eq!(&bytes[..4], &8i32.to_be_bytes());
        assert_eq!(&bytes[4..], &[b'a', 0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80, b'b']);
        assert_eq!(String::decode(&mut Reader::new(&bytes)).unwrap(), s);
        // Standard UTF-8 from non-Java clients decodes too.
        assert_eq!(decode_java_utf8("a\u{1F600}b".as_bytes()), s);
    }

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        let mut bytes = (i32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        assert!(matches!(Vec::<i64>::decode(&mut Reader::new(&bytes)), Err(DecodeError::BadLength(_))));
        assert!(matches!(<Option<Vec<u8>>>::decode(&mut Reader::new(&bytes)), Err(DecodeError::BadLength(_))));
        let neg = (-5i32).to_be_bytes();
        assert!(String::decode(&mut Reader::new(&neg)).is_err());
        assert_eq!(decode_java_utf8(&[0x61, 0xFF, 0x62]), "a\u{FFFD}b");
    }
}
