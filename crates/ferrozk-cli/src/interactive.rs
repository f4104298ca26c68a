//! The interactive shell: rustyline for the prompt, line editing, history and tab completion of
//! command names and znode paths (zkCli's `JLineZNodeCompleter`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

use crate::format::java_sort;
use crate::session::Zk;
use crate::shell::{Flow, Shell, COMMANDS};

struct ZkHelper {
    zk: Arc<Mutex<Option<Zk>>>,
    rt: tokio::runtime::Handle,
}

impl ZkHelper {
    fn children(&self, dir: &str) -> Vec<String> {
        let Some(zk) = self.zk.lock().unwrap().clone() else { return Vec::new() };
        if !zk.state().is_alive() {
            return Vec::new();
        }
        let fut = async move { tokio::time::timeout(Duration::from_secs(3), zk.get_children(dir, false)).await };
        match self.rt.block_on(fut) {
            Ok(Ok((mut c, _))) => {
                java_sort(&mut c);
                c
            }
            _ => Vec::new(),
        }
    }
}

impl Completer for ZkHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(' ').map(|i| i + 1).unwrap_or(0);
        let token = &before[start..];
        if token.starts_with('/') {
            let slash = token.rfind('/').unwrap_or(0);
            let dir = if slash == 0 { "/" } else { &token[..slash] };
            let prefix = &token[slash + 1..];
            let found: Vec<String> = self.children(dir).into_iter().filter(|c| c.starts_with(prefix)).collect();
            return Ok((start + slash + 1, found));
        }
        let found = COMMANDS.iter().map(|(c, _)| c.to_string()).filter(|c| c.starts_with(token)).collect();
        Ok((start, found))
    }
}

impl Hinter for ZkHelper {
    type Hint = String;
}
impl Highlighter for ZkHelper {}
impl Validator for ZkHelper {}
impl Helper for ZkHelper {}

/// Prompts and runs lines until `quit` or end of input; returns the exit status.
pub async fn run(shell: &mut Shell) -> i32 {
    let (prompt_tx, prompt_rx) = std::sync::mpsc::channel::<String>();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    let helper = ZkHelper { zk: shell.shared_zk.clone(), rt: tokio::runtime::Handle::current() };
    // rustyline blocks: it runs on a thread of its own and reads a line when given a prompt.
    std::thread::spawn(move || {
        // Tab lists the candidates and completes their common prefix, as JLine does.
        let config = Config::builder().completion_type(CompletionType::List).auto_add_history(false).build();
        let mut ed = match Editor::<ZkHelper, DefaultHistory>::with_config(config) {
            Ok(ed) => ed,
            Err(_) => {
                let _ = line_tx.send(None);
                return;
            }
        };
        ed.set_helper(Some(helper));
        while let Ok(prompt) = prompt_rx.recv() {
            match ed.readline(&prompt) {
                Ok(line) => {
                    for l in line.split('\n').filter(|l| !l.trim().is_empty()) {
                        let _ = ed.add_history_entry(l);
                    }
                    if line_tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                // Ctrl-C drops the line being typed.
                Err(ReadlineError::Interrupted) => {
                    if line_tx.send(Some(String::new())).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = line_tx.send(None);
                    return;
                }
            }
        }
    });
    loop {
        if prompt_tx.send(shell.prompt()).is_err() {
            return shell.exit_code;
        }
        match line_rx.recv().await {
            Some(Some(text)) => {
                // A bracketed paste of several lines arrives as one: run them one by one.
                for line in text.split('\n') {
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if let Flow::Exit(code) = shell.execute_line(line).await {
                        return code;
                    }
                }
            }
            _ => return shell.exit_code,
        }
    }
}
