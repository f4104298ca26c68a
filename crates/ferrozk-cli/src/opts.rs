//! Option parsing as zkCli does it (Apache Commons CLI's `DefaultParser`): options may come
//! anywhere among the arguments, `-sw` is `-s -w`, `-v5` and `-v=5` give `-v` the value 5, a
//! negative number is an argument, an unknown `-x` is an error, and the error messages are the
//! exceptions' `toString()`s that zkCli prints.

/// One option: a name (usually a letter; reconfig has `-file`, `-members`, ...), whether it
/// takes a value, and the description the usage text shows.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub name: &'static str,
    pub arg: bool,
    pub desc: &'static str,
}

pub const fn flag(name: &'static str, desc: &'static str) -> Opt {
    Opt { name, arg: false, desc }
}

pub const fn valued(name: &'static str, desc: &'static str) -> Opt {
    Opt { name, arg: true, desc }
}

/// A command's options; `group` names options of which at most one may be given (Commons CLI's
/// `OptionGroup`), and `group_required` says one of them must be.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub opts: &'static [Opt],
    pub group: &'static [&'static str],
    pub group_required: bool,
}

impl Spec {
    pub const fn new(opts: &'static [Opt]) -> Spec {
        Spec { opts, group: &[], group_required: false }
    }

    fn get(&self, name: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.name == name)
    }
}

/// What a parse found: the options in the order given (with their values) and the other
/// arguments (the command name is the first of them).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub opts: Vec<(&'static str, Option<String>)>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// The first value given to the option.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.opts.iter().filter(|(n, _)| *n == name).find_map(|(_, v)| v.as_deref())
    }
}

/// A Commons CLI `ParseException`; `Display` is its `toString()`, which zkCli prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unrecognized(String),
    MissingArgument(String),
    AlreadySelected { option: String, selected: String },
    MissingGroup(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Unrecognized(t) => {
                write!(f, "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {t}")
            }
            ParseError::MissingArgument(o) => {
                write!(f, "org.apache.commons.cli.MissingArgumentException: Missing argument for option: {o}")
            }
            ParseError::AlreadySelected { option, selected } => write!(
                f,
                "org.apache.commons.cli.AlreadySelectedException: The option '{option}' was specified but an option from this group has already been selected: '{selected}'"
            ),
            ParseError::MissingGroup(g) => {
                write!(f, "org.apache.commons.cli.MissingOptionException: Missing required option: {g}")
            }
        }
    }
}

struct Parser<'a> {
    spec: &'a Spec,
    out: Parsed,
    /// Index in `out.opts` of an option still waiting for its value.
    current: Option<usize>,
    selected: Option<&'static str>,
    skip: bool,
}

/// `Double.parseDouble` accepts it: such a token is an argument even though it starts with `-`.
fn is_negative_number(t: &str) -> bool {
    let s = t.trim();
    let s = s.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(s);
    if s.is_empty() || s.chars().any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) {
        return matches!(s, "-Infinity" | "-NaN" | "+Infinity" | "+NaN" | "Infinity" | "NaN");
    }
    s.parse::<f64>().is_ok()
}

fn strip_quotes(s: &str) -> String {
    if s.len() > 1 && s.starts_with('"') && s.ends_with('"') && s[1..].find('"') == Some(s.len() - 2) {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

impl<'a> Parser<'a> {
    fn is_short_option(&self, token: &str) -> bool {
        if !token.starts_with('-') || token.len() == 1 {
            return false;
        }
        let body = &token[1..];
        let name = match body.find('=') {
            Some(p) => &body[..p],
            None => body,
        };
        if self.spec.get(name).is_some() {
            return true;
        }
        name.chars().next().is_some_and(|c| self.spec.get(&c.to_string()).is_some())
    }

    fn is_argument(&self, token: &str) -> bool {
        !self.is_short_option(token) || is_negative_number(token)
    }

    fn accepts_arg(&self) -> bool {
        match self.current {
            Some(i) => self.out.opts[i].1.is_none(),
            None => false,
        }
    }

    fn check_required_args(&self) -> Result<(), ParseError> {
        if let Some(i) = self.current {
            if self.out.opts[i].1.is_none() {
                return Err(ParseError::MissingArgument(self.out.opts[i].0.to_string()));
            }
        }
        Ok(())
    }

    fn handle_option(&mut self, name: &str) -> Result<(), ParseError> {
        self.check_required_args()?;
        let opt = *self.spec.get(name).expect("known option");
        if self.spec.group.contains(&opt.name) {
            match self.selected {
                Some(s) if s != opt.name => {
                    return Err(ParseError::AlreadySelected { option: opt.name.into(), selected: s.into() })
                }
                _ => self.selected = Some(opt.name),
            }
        }
        self.out.opts.push((opt.name, None));
        self.current = opt.arg.then_some(self.out.opts.len() - 1);
        Ok(())
    }

    fn set_value(&mut self, v: String) {
        if let Some(i) = self.current {
            self.out.opts[i].1 = Some(v);
        }
    }

    fn unknown(&mut self, token: &str) -> Result<(), ParseError> {
        if token.starts_with('-') && token.len() > 1 {
            return Err(ParseError::Unrecognized(token.to_string()));
        }
        self.out.args.push(token.to_string());
        Ok(())
    }

    fn handle_token(&mut self, token: &str) -> Result<(), ParseError> {
        if self.skip {
            self.out.args.push(token.to_string());
        } else if token == "--" {
            self.skip = true;
        } else if self.accepts_arg() && self.is_argument(token) {
            self.set_value(strip_quotes(token));
        } else if token.starts_with("--") {
            // No command has long options.
            return Err(ParseError::Unrecognized(token.to_string()));
        } else if token.starts_with('-') && token != "-" {
            self.handle_short(token)?;
        } else {
            self.unknown(token)?;
        }
        if !self.accepts_arg() {
            self.current = None;
        }
        Ok(())
    }

    fn handle_short(&mut self, token: &str) -> Result<(), ParseError> {
        let t = &token[1..];
        match t.find('=') {
            _ if t.chars().count() == 1 => {
                if self.spec.get(t).is_some() {
                    self.handle_option(t)
                } else {
                    self.unknown(token)
                }
            }
            None => {
                if self.spec.get(t).is_some() {
                    self.handle_option(t)
                } else {
                    self.concatenated(token)
                }
            }
            Some(pos) => {
                let (name, value) = (&t[..pos], &t[pos + 1..]);
                if name.chars().count() == 1 {
                    match self.spec.get(name) {
                        Some(o) if o.arg => {
                            self.handle_option(name)?;
                            self.set_value(value.to_string());
                            self.current = None;
                            Ok(())
                        }
                        _ => self.unknown(token),
                    }
                } else {
                    Err(ParseError::Unrecognized(token.to_string()))
                }
            }
        }
    }

    fn concatenated(&mut self, token: &str) -> Result<(), ParseError> {
        let chars: Vec<(usize, char)> = token.char_indices().collect();
        for k in 1..chars.len() {
            let (at, c) = chars[k];
            let name = c.to_string();
            if self.spec.get(&name).is_none() {
                return self.unknown(token);
            }
            self.handle_option(&name)?;
            if self.current.is_some() && k + 1 != chars.len() {
                self.set_value(token[at + c.len_utf8()..].to_string());
                break;
            }
        }
        Ok(())
    }
}

/// Parses a command's words (the command name included, as zkCli passes it).
pub fn parse(spec: &Spec, words: &[String]) -> Result<Parsed, ParseError> {
    let mut p = Parser { spec, out: Parsed::default(), current: None, selected: None, skip: false };
    for w in words {
        p.handle_token(w)?;
    }
    p.check_required_args()?;
    if spec.group_required && p.selected.is_none() {
        let items: Vec<String> = spec
            .group
            .iter()
            .map(|n| {
                let d = spec.get(n).map(|o| o.desc).unwrap_or("");
                format!("-{n} {d}")
            })
            .collect();
        return Err(ParseError::MissingGroup(format!("[{}]", items.join(", "))));
    }
    Ok(p.out)
}

/// Commons CLI `HelpFormatter.printOptions` with its defaults (left pad 1, description pad 3),
/// options sorted by name ignoring case: the option lines zkCli 3.9 appends to some usages.
pub fn options_help(opts: &[Opt]) -> String {
    let mut sorted: Vec<&Opt> = opts.iter().collect();
    sorted.sort_by_key(|o| o.name.to_lowercase());
    let heads: Vec<String> =
        sorted.iter().map(|o| if o.arg { format!(" -{} <arg>", o.name) } else { format!(" -{}", o.name) }).collect();
    let width = heads.iter().map(|h| h.chars().count()).max().unwrap_or(0);
    let lines: Vec<String> = sorted
        .iter()
        .zip(&heads)
        .map(|(o, h)| format!("{h}{}   {}", " ".repeat(width - h.chars().count()), o.desc).trim_end().to_string())
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    const SET: Spec = Spec::new(&[flag("s", "stat"), valued("v", "version"), flag("b", "base64")]);
    const QUOTA: Spec = crate::shell::SETQUOTA;

    #[test]
    fn options_anywhere_negative_numbers_and_values() {
        let p = parse(&SET, &w("set -v -1 /a any")).unwrap();
        assert_eq!(p.value("v"), Some("-1"));
        assert_eq!(p.args, w("set /a any"));
        let p = parse(&SET, &w("set /a x -sv5")).unwrap();
        assert!(p.has("s"));
        assert_eq!(p.value("v"), Some("5"));
        let p = parse(&SET, &w("set -v=7 /a x")).unwrap();
        assert_eq!(p.value("v"), Some("7"));
        // -v takes the next word as its value even if it is a path.
        let p = parse(&SET, &w("set -v /x")).unwrap();
        assert_eq!(p.args, w("set"));
    }

    #[test]
    fn errors_read_like_commons_cli() {
        assert_eq!(
            parse(&SET, &w("set -z /a x")).unwrap_err().to_string(),
            "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -z"
        );
        assert_eq!(
            parse(&SET, &w("set /a x -v")).unwrap_err().to_string(),
            "org.apache.commons.cli.MissingArgumentException: Missing argument for option: v"
        );
        assert_eq!(parse(&SET, &w("set /a x -5")).unwrap_err(), ParseError::Unrecognized("-5".into()));
        assert_eq!(
            parse(&QUOTA, &w("setquota -n 3 -N 4 /x")).unwrap_err().to_string(),
            "org.apache.commons.cli.AlreadySelectedException: The option 'N' was specified but an option from this group has already been selected: 'n'"
        );
        assert_eq!(
            parse(&QUOTA, &w("setquota /x")).unwrap_err().to_string(),
            "org.apache.commons.cli.MissingOptionException: Missing required option: [-n num soft quota, -b bytes soft quota, -N num hard quota, -B bytes hard quota]"
        );
    }

    #[test]
    fn help_lines() {
        assert_eq!(options_help(SET.opts), " -b         base64\n -s         stat\n -v <arg>   version");
    }
}
