//! Quota bookkeeping in ZooKeeper's format: limits and usage live as text in
//! `/zookeeper/quota<path>/zookeeper_limits` and `.../zookeeper_stats`
//! (`count=N,bytes=N` with extra keys after `=;`, as `StatsTrack` writes them).

use std::collections::BTreeMap;

pub const QUOTA_ROOT: &str = "/zookeeper/quota";
pub const LIMIT_NODE: &str = "zookeeper_limits";
pub const STAT_NODE: &str = "zookeeper_stats";

pub fn limit_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{LIMIT_NODE}")
}

pub fn stat_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{STAT_NODE}")
}

/// Parsed `StatsTrack` text. Missing keys read as -1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack(BTreeMap<String, i64>);

impl StatsTrack {
    pub fn parse(data: Option<&[u8]>) -> StatsTrack {
        let mut m = BTreeMap::new();
        let text = data.map(|d| String::from_utf8_lossy(d).into_owned()).unwrap_or_default();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=').filter(|s| !s.is_empty());
            if let (Some(k), v) = (kv.next(), kv.next()) {
                let v = v.map_or(Some(-1), |v| v.trim().parse::<i64>().ok());
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
        }
        StatsTrack(m)
    }

    pub fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, v: i64) {
        self.0.insert(key.to_string(), v);
    }

    pub fn count(&self) -> i64 {
        self.get("count")
    }

    pub fn bytes(&self) -> i64 {
        self.get("bytes")
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("count={},bytes={}", self.count(), self.bytes());
        let extra: Vec<_> = self.0.iter().filter(|(k, _)| *k != "count" && *k != "bytes").collect();
        if !extra.is_empty() {
            s.push('=');
            for (k, v) in extra {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_text_matches_zookeeper() {
        let mut t = StatsTrack::parse(Some(b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2"));
        assert_eq!(t.get("countHardLimit"), 2);
        t.set("count", 3);
        assert_eq!(t.to_text(), "count=3,bytes=-1=;byteHardLimit=-1;countHardLimit=2");
        assert_eq!(StatsTrack::parse(Some(b"count=1,bytes=5")).to_text(), "count=1,bytes=5");
    }
}
