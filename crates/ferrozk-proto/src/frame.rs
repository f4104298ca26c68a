//! Length-prefixed framing: a 4-byte big-endian length, then the payload.

/// ZooKeeper's default `jute.maxbuffer` (0xfffff bytes).
pub const DEFAULT_MAX_BUFFER: usize = 0xfffff;

/// What the first four bytes of a buffer say about the frame behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// More bytes are needed before a frame is complete.
    Incomplete,
    /// A complete frame: its payload is `buf[4..4 + len]`.
    Complete(usize),
    /// The length is negative or above the limit ("Len error" in ZooKeeper): close the connection.
    TooLarge(i64),
}

/// Check-then-parse: decides from the length prefix alone whether a frame is complete, so nothing
/// is allocated for a frame that is not all there or is over `max`.
pub fn check_frame(buf: &[u8], max: usize) -> FrameCheck {
    if buf.len() < 4 {
        return FrameCheck::Incomplete;
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return FrameCheck::TooLarge(len as i64);
    }
    if buf.len() - 4 < len as usize {
        FrameCheck::Incomplete
    } else {
        FrameCheck::Complete(len as usize)
    }
}

/// Appends a frame: reserves the length, lets `body` write the payload, then fills the length in.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_before_parsing() {
        assert_eq!(check_frame(&[0, 0], 100), FrameCheck::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 3, 1, 2], 100), FrameCheck::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 2, 1, 2], 100), FrameCheck::Complete(2));
        assert_eq!(check_frame(&[0, 0, 1, 0], 100), FrameCheck::TooLarge(256));
        assert_eq!(check_frame(&[0xff, 0xff, 0xff, 0xfe], 100), FrameCheck::TooLarge(-2));
        let mut out = Vec::new();
        write_frame(&mut out, |b| b.extend_from_slice(b"xyz"));
        assert_eq!(out, vec![0, 0, 0, 3, b'x', b'y', b'z']);
    }
}
