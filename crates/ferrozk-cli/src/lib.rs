//! `ferrozk cli`: a shell that behaves like Apache ZooKeeper's `zkCli.sh`.

/// Runs the shell with zkCli's arguments (`-server host:port[/chroot] -timeout ms [cmd args]`);
/// returns the process exit status.
pub async fn run(args: Vec<String>) -> i32 {
    let _ = args;
    eprintln!("ferrozk cli: not implemented yet");
    2
}
