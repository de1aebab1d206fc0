//! Word processing of Dockerfile arguments, with the rules of Docker's shell lexer: quotes,
//! the escape token, and `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}`, `${VAR?msg}`,
//! `${VAR:?msg}` substitution. `process_word` gives one string (ENV/LABEL/COPY arguments);
//! `process_words` splits on unquoted blanks, including blanks that come from substitutions.

use std::fmt;

/// A word-processing error (unterminated quote, bad substitution, required variable unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellError(pub String);

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShellError {}

/// Looks a variable up: `None` = unset, `Some("")` = set and empty.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A list of `KEY=value` strings; the last one of a key wins.
impl Env for [String] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == name).then(|| v.to_string())
        })
    }
}

impl Env for Vec<String> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output (used to find heredoc markers).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave `$NAME` as written when NAME is unset.
    pub skip_unset: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
        }
    }

    pub fn process_word(&self, src: &str, env: &dyn Env) -> Result<String, ShellError> {
        self.run(src, env).map(|(w, _)| w)
    }

    pub fn process_words(&self, src: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        self.run(src, env).map(|(_, ws)| ws)
    }

    fn run(&self, src: &str, env: &dyn Env) -> Result<(String, Vec<String>), ShellError> {
        let mut st = State {
            lx: self,
            chars: src.chars().collect(),
            pos: 0,
            env,
        };
        st.until(None)
            .map_err(|e| ShellError(format!("failed to process \"{src}\": {}", e.0)))
    }
}

/// Splits into words as characters come in.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct State<'a> {
    lx: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
}

fn err<T>(m: impl Into<String>) -> Result<T, ShellError> {
    Err(ShellError(m.into()))
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes up to `stop` (consumed) or the end of input.
    fn until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '\'' => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    words.add_raw_str(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    words.add_raw_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_str(&s);
                }
                _ => {
                    self.pos += 1;
                    if c == self.lx.escape {
                        if self.lx.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        match self.next() {
                            None => break,
                            Some(n) => {
                                words.add_raw_char(n);
                                result.push(n);
                            }
                        }
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(s) = stop {
            return err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let q = self.next();
        if self.lx.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                    )
                }
                Some('\'') => {
                    if self.lx.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let q = self.next();
        if self.lx.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lx.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c == self.lx.escape {
                        if self.lx.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            Some(_) => out.push(c),
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name)
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        match self.next() {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some('?') => {
                let word = self.nested_word()?;
                match self.lookup(&name) {
                    Some(v) => Ok(v),
                    None => err(format!(
                        "{name}: {}",
                        or(&word, "is not allowed to be unset")
                    )),
                }
            }
            Some(':') => {
                let modifier = self.next();
                let word = self.nested_word()?;
                let value = self.lookup(&name);
                match modifier {
                    Some('+') => Ok(match value {
                        Some(v) if !v.is_empty() => word,
                        _ => String::new(),
                    }),
                    Some('-') => Ok(match value {
                        Some(v) if !v.is_empty() => v,
                        _ => word,
                    }),
                    Some('?') => match value {
                        None => err(format!(
                            "{name}: {}",
                            or(&word, "is not allowed to be unset")
                        )),
                        Some(v) if v.is_empty() => err(format!(
                            "{name}: {}",
                            or(&word, "is not allowed to be empty")
                        )),
                        Some(v) => Ok(v),
                    },
                    Some(m) => err(format!("unsupported modifier ({m}) in substitution")),
                    None => err("syntax error: missing '}'"),
                }
            }
            None => err("syntax error: missing '}'"),
            Some(_) => err("missing ':' in substitution"),
        }
    }

    /// The word of `${name:-word}` up to its closing brace.
    fn nested_word(&mut self) -> Result<String, ShellError> {
        match self.until(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => err("syntax error: missing '}'"),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional
    /// parameter; or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }
}

fn or(word: &str, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions() {
        let env = vec!["A=x y".to_string(), "E=".to_string()];
        let lx = Lexer::new('\\');
        assert_eq!(lx.process_word("${A:-z}", &env).unwrap(), "x y");
        assert_eq!(lx.process_word("${E:-z}", &env).unwrap(), "z");
        assert!(lx.process_word("${E-z}", &env).is_err());
        assert_eq!(lx.process_words("a$A", &env).unwrap(), vec!["ax", "y"]);
        assert!(lx
            .process_word("${U?need U}", &env)
            .unwrap_err()
            .0
            .contains("U: need U"));
    }
}
