//! Quota bookkeeping in ZooKeeper's format: limits and usage live as text in
//! `/zookeeper/quota<path>/zookeeper_limits` and `.../zookeeper_stats`
//! (`count=N,bytes=N` with extra keys after `=;`: [`ferrozk_proto::StatsTrack`]).

pub const QUOTA_ROOT: &str = "/zookeeper/quota";
pub const LIMIT_NODE: &str = "zookeeper_limits";
pub const STAT_NODE: &str = "zookeeper_stats";

pub fn limit_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{LIMIT_NODE}")
}

pub fn stat_path(path: &str) -> String {
    format!("{QUOTA_ROOT}{path}/{STAT_NODE}")
}
