//! The STIX 2.1 patterning language, parsed far enough to list its comparisons.
//!
//! The whole grammar of observation expressions is checked (brackets, `AND`/`OR`/`FOLLOWEDBY`,
//! the `START`/`STOP`, `WITHIN` and `REPEATS` qualifiers, parentheses), and every comparison
//! expression is returned with its object path, operator and literal(s), whatever boolean
//! structure joins them: a feed indicator's pattern is a list of things to watch for.

use std::iter::Peekable;
use std::str::CharIndices;

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    /// A quoted string, unescaped.
    Str(String),
    /// A number, boolean, `t'...'` timestamp, `h'...'` hex or `b'...'` binary literal, as
    /// written.
    Other(String),
}

/// One comparison expression: `<object_type>:<path> [NOT] <operator> <literal(s)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) object_type: String,
    /// Property path: `["value"]`, `["hashes", "SHA-256"]`, `["from_ref", "value"]`; list
    /// indexes as `"[*]"` or `"[0]"`.
    pub(crate) path: Vec<String>,
    pub(crate) negated: bool,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`, `IN`, `LIKE`, `MATCHES`, `ISSUBSET`, `ISSUPERSET`.
    pub(crate) operator: String,
    /// One literal, or the list of an `IN`.
    pub(crate) values: Vec<Literal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LBrack,
    RBrack,
    LParen,
    RParen,
    Comma,
    Op(&'static str),
    Path {
        object_type: String,
        path: Vec<String>,
    },
    Str(String),
    Lit(String),
    /// A keyword, uppercased.
    Word(String),
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end".to_string(),
        Some(Tok::LBrack) => "'['".to_string(),
        Some(Tok::RBrack) => "']'".to_string(),
        Some(Tok::LParen) => "'('".to_string(),
        Some(Tok::RParen) => "')'".to_string(),
        Some(Tok::Comma) => "','".to_string(),
        Some(Tok::Op(op)) => format!("'{op}'"),
        Some(Tok::Path { object_type, path }) => format!("'{object_type}:{}'", path.join(".")),
        Some(Tok::Str(s)) => format!("'{s}'"),
        Some(Tok::Lit(s) | Tok::Word(s)) => format!("'{s}'"),
    }
}

/// Every comparison of a STIX pattern, or why it is not one.
pub(crate) fn comparisons(pattern: &str) -> Result<Vec<Comparison>, String> {
    let toks = lex(pattern)?;
    let mut p = Parser {
        toks,
        pos: 0,
        out: Vec::new(),
        depth: 0,
    };
    p.observation_or()?;
    if p.pos < p.toks.len() {
        return Err(format!(
            "unexpected {} after the pattern",
            describe(p.peek())
        ));
    }
    Ok(p.out)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let single = match c {
            '[' => Some(Tok::LBrack),
            ']' => Some(Tok::RBrack),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Op("=")),
            _ => None,
        };
        if let Some(t) = single {
            it.next();
            out.push(t);
            continue;
        }
        match c {
            '!' | '<' | '>' => {
                it.next();
                let eq = it.next_if(|&(_, c)| c == '=').is_some();
                out.push(Tok::Op(match (c, eq) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err(format!("'!' without '=' at {i}")),
                }));
            }
            '\'' => {
                it.next();
                out.push(Tok::Str(string(&mut it, i)?));
            }
            c if is_ident(c) => {
                let word = run(&mut it, is_ident);
                match it.peek() {
                    Some(&(_, ':')) => {
                        it.next();
                        out.push(path(&mut it, word, i)?);
                    }
                    Some(&(_, '\'')) if matches!(word.as_str(), "t" | "h" | "b") => {
                        it.next();
                        let body = string(&mut it, i)?;
                        out.push(Tok::Lit(format!("{word}'{body}'")));
                    }
                    Some(&(_, '.'))
                        if word
                            .trim_start_matches('-')
                            .bytes()
                            .all(|b| b.is_ascii_digit()) =>
                    {
                        it.next();
                        let frac = run(&mut it, |c| c.is_ascii_digit());
                        out.push(Tok::Lit(format!("{word}.{frac}")));
                    }
                    _ => {
                        let number = word.trim_start_matches('-');
                        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                            || matches!(word.as_str(), "true" | "false")
                        {
                            out.push(Tok::Lit(word));
                        } else {
                            out.push(Tok::Word(word.to_ascii_uppercase()));
                        }
                    }
                }
            }
            c => return Err(format!("unexpected character {c:?} at {i}")),
        }
    }
    Ok(out)
}

fn run(it: &mut Peekable<CharIndices<'_>>, accept: impl Fn(char) -> bool) -> String {
    let mut s = String::new();
    while let Some((_, c)) = it.next_if(|&(_, c)| accept(c)) {
        s.push(c);
    }
    s
}

/// The rest of a quoted string whose opening quote (at `start`) was consumed: `\'` and `\\` are
/// unescaped, any other backslash is kept as written.
fn string(it: &mut Peekable<CharIndices<'_>>, start: usize) -> Result<String, String> {
    let mut s = String::new();
    loop {
        match it.next() {
            None => return Err(format!("unterminated string starting at {start}")),
            Some((_, '\'')) => return Ok(s),
            Some((_, '\\')) => match it.next() {
                Some((_, c @ ('\'' | '\\'))) => s.push(c),
                Some((_, c)) => {
                    s.push('\\');
                    s.push(c);
                }
                None => return Err(format!("unterminated string starting at {start}")),
            },
            Some((_, c)) => s.push(c),
        }
    }
}

/// An object path after `<object_type>:`.
fn path(
    it: &mut Peekable<CharIndices<'_>>,
    object_type: String,
    start: usize,
) -> Result<Tok, String> {
    if object_type.is_empty()
        || !object_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!("invalid object type {object_type:?} at {start}"));
    }
    let mut path = Vec::new();
    loop {
        let component = match it.peek() {
            Some(&(i, '\'')) => {
                it.next();
                string(it, i)?
            }
            _ => run(it, is_ident),
        };
        if component.is_empty() {
            return Err(format!(
                "incomplete object path '{object_type}:' at {start}"
            ));
        }
        path.push(component);
        // A list index: `[*]` or `[<digits>]`, told apart from a new observation by its body.
        loop {
            let mut look = it.clone();
            if look.next_if(|&(_, c)| c == '[').is_none() {
                break;
            }
            let index = run(&mut look, |c| c == '*' || c.is_ascii_digit());
            if index.is_empty() || look.next_if(|&(_, c)| c == ']').is_none() {
                break;
            }
            *it = look;
            path.push(format!("[{index}]"));
        }
        if it.next_if(|&(_, c)| c == '.').is_none() {
            break;
        }
    }
    Ok(Tok::Path { object_type, path })
}

/// Deepest nesting of parentheses a pattern may have: the parser recurses once per level, and
/// 20,000 levels (40 KB of a feed) overflowed the stack, which kills the process.
const MAX_NESTING: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    out: Vec<Comparison>,
    /// Parentheses open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Runs `inner` one parenthesis deeper, refusing patterns nested beyond [`MAX_NESTING`].
    fn nested(&mut self, inner: fn(&mut Self) -> Result<(), String>) -> Result<(), String> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "parentheses nested more than {MAX_NESTING} levels deep"
            ));
        }
        self.depth += 1;
        let r = inner(self);
        self.depth -= 1;
        r?;
        self.expect(&Tok::RParen)
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), String> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {} but found {}",
                describe(Some(tok)),
                describe(self.peek())
            ))
        }
    }

    fn observation_or(&mut self) -> Result<(), String> {
        self.observation_and()?;
        while self.eat_word("OR") {
            self.observation_and()?;
        }
        Ok(())
    }

    fn observation_and(&mut self) -> Result<(), String> {
        self.observation_sequence()?;
        while self.eat_word("AND") {
            self.observation_sequence()?;
        }
        Ok(())
    }

    fn observation_sequence(&mut self) -> Result<(), String> {
        self.observation_qualified()?;
        while self.eat_word("FOLLOWEDBY") {
            self.observation_qualified()?;
        }
        Ok(())
    }

    fn observation_qualified(&mut self) -> Result<(), String> {
        match self.next() {
            Some(Tok::LBrack) => {
                self.comparison_or()?;
                self.expect(&Tok::RBrack)?;
            }
            Some(Tok::LParen) => self.nested(Self::observation_or)?,
            other => {
                return Err(format!(
                    "expected '[' or '(' but found {}",
                    describe(other.as_ref())
                ));
            }
        }
        loop {
            if self.eat_word("START") {
                self.literal()?;
                if !self.eat_word("STOP") {
                    return Err(format!("expected STOP but found {}", describe(self.peek())));
                }
                self.literal()?;
            } else if self.eat_word("WITHIN") {
                self.literal()?;
                if !self.eat_word("SECONDS") {
                    return Err(format!(
                        "expected SECONDS but found {}",
                        describe(self.peek())
                    ));
                }
            } else if self.eat_word("REPEATS") {
                self.literal()?;
                if !self.eat_word("TIMES") {
                    return Err(format!(
                        "expected TIMES but found {}",
                        describe(self.peek())
                    ));
                }
            } else {
                return Ok(());
            }
        }
    }

    fn comparison_or(&mut self) -> Result<(), String> {
        self.comparison_and()?;
        while self.eat_word("OR") {
            self.comparison_and()?;
        }
        Ok(())
    }

    fn comparison_and(&mut self) -> Result<(), String> {
        self.comparison_primary()?;
        while self.eat_word("AND") {
            self.comparison_primary()?;
        }
        Ok(())
    }

    fn comparison_primary(&mut self) -> Result<(), String> {
        match self.next() {
            Some(Tok::LParen) => self.nested(Self::comparison_or),
            Some(Tok::Path { object_type, path }) => {
                let negated = self.eat_word("NOT");
                let operator = match self.next() {
                    Some(Tok::Op(op)) => op.to_string(),
                    Some(Tok::Word(w))
                        if matches!(
                            w.as_str(),
                            "IN" | "LIKE" | "MATCHES" | "ISSUBSET" | "ISSUPERSET"
                        ) =>
                    {
                        w
                    }
                    other => {
                        return Err(format!(
                            "expected a comparison operator after '{object_type}:{}' but found {}",
                            path.join("."),
                            describe(other.as_ref())
                        ));
                    }
                };
                let values = if operator == "IN" {
                    self.expect(&Tok::LParen)?;
                    let mut values = vec![self.literal()?];
                    while self.peek() == Some(&Tok::Comma) {
                        self.pos += 1;
                        values.push(self.literal()?);
                    }
                    self.expect(&Tok::RParen)?;
                    values
                } else {
                    vec![self.literal()?]
                };
                self.out.push(Comparison {
                    object_type,
                    path,
                    negated,
                    operator,
                    values,
                });
                Ok(())
            }
            other => Err(format!(
                "expected a comparison but found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Lit(s)) => Ok(Literal::Other(s)),
            other => Err(format!(
                "expected a literal but found {}",
                describe(other.as_ref())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(object_type: &str, path: &[&str], operator: &str, value: &str) -> Comparison {
        Comparison {
            object_type: object_type.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            negated: false,
            operator: operator.into(),
            values: vec![Literal::Str(value.into())],
        }
    }

    #[test]
    fn simple_equality() {
        assert_eq!(
            comparisons("[ipv4-addr:value = '198.51.100.1']").unwrap(),
            vec![cmp("ipv4-addr", &["value"], "=", "198.51.100.1")]
        );
    }

    #[test]
    fn quoted_hash_names_and_escapes() {
        let got = comparisons(
            r"[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f' OR file:hashes.MD5 = 'x'] OR [file:name = 'it\'s \\ here.exe']",
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].path, vec!["hashes", "SHA-256"]);
        assert_eq!(got[1].path, vec!["hashes", "MD5"]);
        assert_eq!(got[2], cmp("file", &["name"], "=", r"it's \ here.exe"));
    }

    #[test]
    fn operators_negation_lists_and_qualifiers() {
        let got = comparisons(
            "([domain-name:value NOT = 'a.example' AND url:value MATCHES '^https?://x\\\\.example/'] \
             FOLLOWEDBY [ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]) WITHIN 600 SECONDS \
             AND [network-traffic:dst_port >= 443 AND network-traffic:dst_ref.value = '10.0.0.1'] \
             START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z' \
             OR [email-message:to_refs[*].value = 'x@example.com'] REPEATS 5 TIMES",
        )
        .unwrap();
        assert_eq!(got.len(), 6);
        assert!(got[0].negated);
        assert_eq!(got[1].operator, "MATCHES");
        assert_eq!(
            got[1].values,
            vec![Literal::Str("^https?://x\\.example/".into())]
        );
        assert_eq!(
            got[2].values,
            vec![
                Literal::Str("192.0.2.1".into()),
                Literal::Str("192.0.2.2".into())
            ]
        );
        assert_eq!(got[3].operator, ">=");
        assert_eq!(got[3].values, vec![Literal::Other("443".into())]);
        assert_eq!(got[4].path, vec!["dst_ref", "value"]);
        assert_eq!(got[5].path, vec!["to_refs", "[*]", "value"]);
    }

    /// Found with fuzz/stix_pattern seeds: 20,000 nested parentheses overflowed the stack.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let leaf = "[ipv4-addr:value = '198.51.100.1']";
        for n in [MAX_NESTING + 1, 100_000] {
            let outer = format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n));
            let e = comparisons(&outer).unwrap_err();
            assert!(e.contains("nested"), "{e}");
            let inner = format!(
                "[{}ipv4-addr:value = '198.51.100.1'{}]",
                "(".repeat(n),
                ")".repeat(n)
            );
            assert!(comparisons(&inner).unwrap_err().contains("nested"));
        }
        let fine = format!(
            "{}{leaf}{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert_eq!(comparisons(&fine).unwrap().len(), 1);
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in [
            "",
            "ipv4-addr:value = '1.2.3.4'",
            "[ipv4-addr:value = '1.2.3.4'",
            "[ipv4-addr:value '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4] ",
            "[ipv4-addr:value = '1.2.3.4'] OR",
            "[ipv4-addr:value = '1.2.3.4'] [url:value = 'x']",
            "[IPv4-Addr:value = '1.2.3.4']",
            "[ipv4-addr: = '1.2.3.4']",
            "[ipv4-addr:value ! '1.2.3.4']",
            "[ipv4-addr:value = '1'] WITHIN 5",
        ] {
            assert!(comparisons(bad).is_err(), "{bad:?} parsed");
        }
    }
}
