//! `WWW-Authenticate` parsing (RFC 7235 §4.1): one header may carry several
//! challenges, each a scheme followed by a token68 or by comma-separated
//! `name=value` auth-params whose values may be quoted strings with escapes
//! and commas (`scope="repository:a:pull,push"`).
//!
//! Scheme and parameter names are case-insensitive and stored lowercased.
//! The parser is lenient: it never fails and never panics, it skips what it
//! cannot read and keeps what it can.

use std::fmt;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// A token68 given instead of parameters (rare in challenges).
    pub token68: Option<String>,
    /// The auth-params in order, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first parameter of that (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the scheme is `Bearer`.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// Whether the scheme is `Basic`.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

impl fmt::Display for Challenge {
    /// The challenge as a header would carry it (values always quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (k, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            write!(f, "{sep}{k}=\"{escaped}\"")?;
        }
        Ok(())
    }
}

/// Parse every challenge in a `WWW-Authenticate` value.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser { s: header.chars().collect(), i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip(|c| is_ws(c) || c == ',');
        if p.eof() {
            return out;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            p.i += 1; // a stray character: skip it
            continue;
        }
        let mut ch = Challenge { scheme: scheme.to_ascii_lowercase(), token68: None, params: Vec::new() };
        p.params(&mut ch);
        out.push(ch);
    }
}

struct Parser {
    s: Vec<char>,
    i: usize,
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

impl Parser {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek_at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn skip(&mut self, f: impl Fn(char) -> bool) {
        while self.peek_at(self.i).is_some_and(&f) {
            self.i += 1;
        }
    }

    fn run_end(&self, from: usize, f: impl Fn(char) -> bool) -> usize {
        let mut j = from;
        while self.peek_at(j).is_some_and(&f) {
            j += 1;
        }
        j
    }

    fn token(&mut self) -> String {
        let end = self.run_end(self.i, is_tchar);
        let t: String = self.s[self.i..end].iter().collect();
        self.i = end;
        t
    }

    /// At `i`: `token BWS "="` not followed by another `=` (which would make
    /// it a token68 such as `abc==`).
    fn param_at(&self, i: usize) -> bool {
        let end = self.run_end(i, is_tchar);
        if end == i {
            return false;
        }
        let eq = self.run_end(end, is_ws);
        self.peek_at(eq) == Some('=') && self.peek_at(eq + 1) != Some('=')
    }

    /// At `i`: a token68 that is the whole item (ends at `,` or the end).
    fn token68_at(&self, i: usize) -> Option<usize> {
        let end = self.run_end(i, is_token68_char);
        if end == i {
            return None;
        }
        let end = self.run_end(end, |c| c == '=');
        let after = self.run_end(end, is_ws);
        matches!(self.peek_at(after), None | Some(',')).then_some(end)
    }

    /// The params (or token68) after a scheme, up to the next challenge.
    fn params(&mut self, ch: &mut Challenge) {
        self.skip(is_ws);
        if let Some(end) = self.token68_at(self.i)
            && !self.param_at(self.i)
        {
            ch.token68 = Some(self.s[self.i..end].iter().collect());
            self.i = end;
            return;
        }
        loop {
            self.skip(is_ws);
            match self.peek_at(self.i) {
                None => return,
                Some(',') => {
                    // A comma either separates params or ends this challenge.
                    let next = self.run_end(self.i, |c| is_ws(c) || c == ',');
                    if !self.param_at(next) {
                        return;
                    }
                    self.i = next;
                }
                Some(_) if self.param_at(self.i) => {
                    let name = self.token().to_ascii_lowercase();
                    self.skip(is_ws);
                    self.i += 1; // '='
                    self.skip(is_ws);
                    let value = self.value();
                    ch.params.push((name, value));
                }
                Some(_) => return, // not a param: the next challenge starts here
            }
        }
    }

    /// A quoted-string (unescaped) or a bare value up to `,` or whitespace.
    fn value(&mut self) -> String {
        if self.peek_at(self.i) != Some('"') {
            let end = self.run_end(self.i, |c| c != ',' && !is_ws(c));
            let v: String = self.s[self.i..end].iter().collect();
            self.i = end;
            return v;
        }
        self.i += 1;
        let mut v = String::new();
        while let Some(c) = self.peek_at(self.i) {
            self.i += 1;
            match c {
                '"' => return v,
                '\\' => {
                    if let Some(n) = self.peek_at(self.i) {
                        v.push(n);
                        self.i += 1;
                    }
                }
                c => v.push(c),
            }
        }
        v // unterminated: keep what there is
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("SERVICE"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let c = parse(r#"bearer Realm="a,b", scope="repository:a:pull,push", x="say \"hi\" \\ ok""#);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].params,
            params(&[("realm", "a,b"), ("scope", "repository:a:pull,push"), ("x", r#"say "hi" \ ok"#)])
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let c = parse(r#"Basic realm="r1", BEARER realm="r2",service=s, Negotiate abc=="#);
        assert_eq!(c.len(), 3);
        assert!(c[0].is_basic());
        assert_eq!(c[0].params, params(&[("realm", "r1")]));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].params, params(&[("realm", "r2"), ("service", "s")]));
        assert_eq!(c[2].scheme, "negotiate");
        assert_eq!(c[2].token68.as_deref(), Some("abc=="));
    }

    #[test]
    fn bare_schemes_and_whitespace() {
        let c = parse("Basic, Bearer");
        assert_eq!(c.len(), 2);
        assert!(c[0].params.is_empty() && c[0].token68.is_none());
        let c = parse("  Bearer   realm = \"x\" ,\tservice= y  ");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].params, params(&[("realm", "x"), ("service", "y")]));
    }

    #[test]
    fn odd_inputs_do_not_confuse() {
        assert!(parse("").is_empty());
        assert!(parse(" , ,, ").is_empty());
        let c = parse(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = parse(r#"Bearer realm="x" stray"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].scheme, "stray");
        let c = parse("Bearer realm=");
        assert_eq!(c[0].param("realm"), Some(""));
        let c = parse("\"quoted\" Bearer realm=x");
        assert_eq!(c.last().unwrap().param("realm"), Some("x"));
        let c = parse("Bearer realm=\"é, ü\"");
        assert_eq!(c[0].param("realm"), Some("é, ü"));
        let c = parse(r#"Bearer realm="x\"#);
        assert_eq!(c[0].param("realm"), Some("x"));
    }

    #[test]
    fn display_round_trips() {
        let header = r#"Bearer realm="a\"b", scope="repository:x:pull,push""#;
        let c = parse(header);
        assert_eq!(parse(&c[0].to_string()), c);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_header_like_input(s in "[A-Za-z =,\"\\\\:/._-]{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn formatted_challenges_parse_back(
            scheme in "[A-Za-z][A-Za-z0-9]{0,8}",
            ps in proptest::collection::vec(("[a-z][a-z0-9_]{0,6}", "[ -~]{0,16}"), 1..4),
        ) {
            let ch = Challenge {
                scheme: scheme.to_ascii_lowercase(),
                token68: None,
                params: ps,
            };
            let two = format!("{ch}, {ch}");
            prop_assert_eq!(parse(&two), vec![ch.clone(), ch]);
        }
    }
}
