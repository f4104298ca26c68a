//! ZooKeeper's quota record (`StatsTrack`), the text kept in `/zookeeper/quota<path>/`
//! `zookeeper_limits` and `zookeeper_stats`: `count` and `bytes` first, then the other keys
//! after an extra `=`, sorted, separated by `;` (`count=1,bytes=5=;countHardLimit=2`). Missing
//! keys read as -1. The server and the shell both read and write it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack(BTreeMap<String, i64>);

impl StatsTrack {
    pub const COUNT: &'static str = "count";
    pub const BYTES: &'static str = "bytes";
    pub const COUNT_HARD: &'static str = "countHardLimit";
    pub const BYTES_HARD: &'static str = "byteHardLimit";

    /// As Java's `StatsTrack(String)` reads it: a key with no value is -1, and a value that is
    /// not a number fails with NumberFormatException's message (which zkCli prints).
    pub fn parse(text: &str) -> Result<StatsTrack, String> {
        let mut stats = BTreeMap::new();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let k = kv.next().unwrap_or("");
            let v = kv.next().filter(|v| !v.is_empty()).unwrap_or("-1");
            let n = v.parse::<i64>().map_err(|_| format!("For input string: \"{v}\""))?;
            stats.insert(k.to_string(), n);
        }
        Ok(StatsTrack(stats))
    }

    /// What a server makes of a stored record whatever it holds (a client may have written
    /// anything there): pairs that do not read as numbers are left out.
    pub fn parse_lenient(data: Option<&[u8]>) -> StatsTrack {
        let mut stats = BTreeMap::new();
        let text = data.map(String::from_utf8_lossy).unwrap_or_default();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=').filter(|s| !s.is_empty());
            if let (Some(k), v) = (kv.next(), kv.next()) {
                if let Some(v) = v.map_or(Some(-1), |v| v.trim().parse::<i64>().ok()) {
                    stats.insert(k.to_string(), v);
                }
            }
        }
        StatsTrack(stats)
    }

    pub fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, v: i64) {
        self.0.insert(key.to_string(), v);
    }

    pub fn count(&self) -> i64 {
        self.get(Self::COUNT)
    }

    pub fn bytes(&self) -> i64 {
        self.get(Self::BYTES)
    }
}

impl std::fmt::Display for StatsTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "count={},bytes={}", self.count(), self.bytes())?;
        let rest: Vec<_> = self.0.iter().filter(|(k, _)| *k != Self::COUNT && *k != Self::BYTES).collect();
        if !rest.is_empty() {
            f.write_str("=")?;
            // BTreeMap order is String order; Java sorts with compareTo: the same for ASCII keys.
            for (k, v) in rest {
                write!(f, ";{k}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_zookeepers() {
        let mut t = StatsTrack::parse_lenient(Some(b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2"));
        assert_eq!(t.get(StatsTrack::COUNT_HARD), 2);
        t.set(StatsTrack::COUNT, 3);
        assert_eq!(t.to_string(), "count=3,bytes=-1=;byteHardLimit=-1;countHardLimit=2");
        assert_eq!(StatsTrack::parse("count=1,bytes=0").unwrap().to_string(), "count=1,bytes=0");
        let s = "count=3,bytes=-1=;byteHardLimit=30;countHardLimit=-1";
        assert_eq!(StatsTrack::parse(s).unwrap().to_string(), s);
        assert_eq!(StatsTrack::parse("count=x").unwrap_err(), "For input string: \"x\"");
        assert_eq!(StatsTrack::parse_lenient(Some(b"count=x,bytes=4")).to_string(), "count=-1,bytes=4");
    }
}
