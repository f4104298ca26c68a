//! `ferrozk cli`: a shell that behaves like Apache ZooKeeper's `zkCli.sh` (3.8/3.9): the same
//! command line, commands, flags, messages, output format and exit statuses, so scripts written
//! for zkCli run unchanged. See `shell` for the commands and `session` for the Java client
//! behaviour they rest on (background connect, one default watcher, watch removal, AUTH_FAILED).

pub mod api;
pub mod format;
mod interactive;
pub mod opts;
pub mod session;
pub mod shell;

use std::io::{BufRead, IsTerminal};

pub use shell::{Flow, Output, Shell};

/// Where commands come from when none is given on the command line.
pub enum Input {
    /// A terminal: prompt, line editing, history, tab completion.
    Terminal,
    /// Lines read without a prompt (zkCli when standard input is not a terminal).
    Lines(Box<dyn BufRead + Send>),
}

/// Runs the shell with zkCli's arguments (`-server host:port[/chroot] -timeout ms [cmd args]`);
/// returns the process exit status.
pub async fn run(args: Vec<String>) -> i32 {
    let input = if std::io::stdin().is_terminal() {
        Input::Terminal
    } else {
        Input::Lines(Box::new(std::io::BufReader::new(std::io::stdin())))
    };
    run_with(args, input, Output::stdio()).await
}

/// [`run`] with the input and output given (tests use it with buffers).
pub async fn run_with(args: Vec<String>, input: Input, out: Output) -> i32 {
    // ZooKeeperMain.MyCommandOptions.parseOptions: options until the first word that is not one.
    let mut server = "localhost:2181".to_string();
    let mut timeout = "30000".to_string();
    let (mut read_only, mut wait) = (false, false);
    let mut command: Option<Vec<String>> = None;
    let mut it = args.into_iter();
    while let Some(opt) = it.next() {
        let needs = matches!(opt.as_str(), "-server" | "-timeout" | "-client-configuration");
        if needs {
            let Some(v) = it.next() else {
                out.err(&format!("Error: no argument found for option {opt}"));
                break;
            };
            match opt.as_str() {
                "-server" => server = v,
                "-timeout" => timeout = v,
                // A Java client properties file: nothing in it applies to this client.
                _ => {}
            }
            continue;
        }
        match opt.as_str() {
            "-r" => read_only = true,
            "-waitforconnection" => wait = true,
            _ => {}
        }
        if !opt.starts_with('-') {
            let mut words = vec![opt];
            words.extend(it.by_ref());
            command = Some(words);
            break;
        }
    }
    let Ok(timeout_ms) = timeout.parse::<i32>() else {
        out.err(&format!("Exception in thread \"main\" java.lang.NumberFormatException: For input string: \"{timeout}\""));
        return 1;
    };
    out.out(&format!("Connecting to {server}"));
    let mut shell = Shell::new(out.clone(), timeout_ms, read_only, wait);
    if let Err(e) = shell.connect(&server).await {
        out.err(&e.msg);
        return 1;
    }
    match command {
        Some(words) => {
            if let Flow::Exit(code) = shell.process_cmd(words).await {
                return code;
            }
        }
        None => {
            out.out("Welcome to ZooKeeper!");
            match input {
                Input::Terminal => {
                    out.out("JLine support is enabled");
                    return interactive::run(&mut shell).await;
                }
                Input::Lines(reader) => {
                    out.out("JLine support is disabled");
                    let mut lines = spawn_line_reader(reader);
                    while let Some(line) = lines.recv().await {
                        if let Flow::Exit(code) = shell.execute_line(&line).await {
                            return code;
                        }
                    }
                }
            }
        }
    }
    shell.exit_code
}

/// Reads lines on a thread of its own (a blocked read must not hold the runtime when the shell
/// exits). Lines end at `\n`, `\r\n` or `\r`, as `BufferedReader.readLine` has it.
fn spawn_line_reader(mut reader: Box<dyn BufRead + Send>) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
            for part in text.split('\r') {
                if tx.send(part.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}
