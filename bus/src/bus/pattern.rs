//! Topic patterns in AMQP syntax over dotted event names.
//!
//! A pattern is words joined by `.`; a word is a literal, `*` (exactly one word) or `#` (zero or
//! more words). `user.*` matches `user.created` but not `user.profile.updated`; `order.#` matches
//! `order`, `order.shipped` and `order.shipped.tracking`; `#` alone matches every name.
//!
//! A bus knows every name it can carry, so a pattern is matched once, when it is subscribed, and
//! becomes the set of member indices it covers; emitting never looks at a pattern again.

use std::fmt;
use std::str::FromStr;

/// A parsed topic pattern such as `user.*` or `order.#`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: Box<str>,
    words: Box<[Word]>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Word {
    Literal(Box<str>),
    /// `*`
    One,
    /// `#`
    Any,
}

/// A pattern that does not parse; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl PatternError {
    /// The pattern that failed to parse.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl Pattern {
    /// Parses `pattern`.
    ///
    /// # Errors
    /// When it is empty, has an empty word (`a..b`, a leading or trailing dot), a `*` or `#` that
    /// is not a whole word (`user*`), or a character other than ASCII letters, digits, `_`, `-`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |reason: String| PatternError {
            pattern: pattern.chars().take(256).collect(),
            reason,
        };
        if pattern.is_empty() {
            return Err(fail(
                "a pattern must not be empty; use `#` to match every event".into(),
            ));
        }
        let mut words = Vec::new();
        for (i, word) in pattern.split('.').enumerate() {
            let word = match word {
                "" => {
                    return Err(fail(format!(
                        "word {} is empty; words are separated by single dots",
                        i + 1
                    )))
                }
                "*" => Word::One,
                "#" => Word::Any,
                literal => {
                    if let Some(c) = literal
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                    {
                        let why = if c == '*' || c == '#' {
                            format!("`{c}` must be a whole word, as in `user.{c}`")
                        } else {
                            format!("`{c}` is not allowed in a word")
                        };
                        return Err(fail(why));
                    }
                    Word::Literal(literal.into())
                }
            };
            // `#.#` matches exactly what `#` does; folding keeps matching linear.
            if !(word == Word::Any && words.last() == Some(&Word::Any)) {
                words.push(word);
            }
        }
        Ok(Pattern {
            source: pattern.into(),
            words: words.into(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        // Two rows of the match table, on the stack for names of up to `ON_STACK` words (the
        // in-memory broker matches every message it routes).
        const ON_STACK: usize = 32;
        let words = name.split('.').count();
        if words < ON_STACK {
            let (mut reach, mut next) = ([false; ON_STACK], [false; ON_STACK]);
            self.match_rows(name, &mut reach[..=words], &mut next[..=words])
        } else {
            self.match_rows(
                name,
                &mut vec![false; words + 1],
                &mut vec![false; words + 1],
            )
        }
    }

    /// The match of `name`, whose word count is one less than the rows' length: `reach[j]`
    /// says whether the pattern words seen so far can match the first `j` words of the name.
    fn match_rows<'r>(
        &self,
        name: &str,
        mut reach: &'r mut [bool],
        mut next: &'r mut [bool],
    ) -> bool {
        let words = reach.len() - 1;
        reach[0] = true;
        for word in self.words.iter() {
            match word {
                Word::Any => {
                    let mut any = false;
                    for j in 0..=words {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                Word::One => {
                    next[0] = false;
                    next[1..].copy_from_slice(&reach[..words]);
                }
                Word::Literal(lit) => {
                    next[0] = false;
                    for (j, part) in name.split('.').enumerate() {
                        next[j + 1] = reach[j] && part == &**lit;
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
        }
        reach[words]
    }

    /// The indices of the names in `names` that match.
    pub(crate) fn indices(&self, names: &[&str]) -> Vec<usize> {
        (0..names.len())
            .filter(|&i| self.matches(names[i]))
            .collect()
    }
}

impl FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = PatternError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Pattern::parse(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn amqp_examples() {
        assert!(m("user.*", "user.created"));
        assert!(!m("user.*", "user"));
        assert!(!m("user.*", "user.profile.updated"));
        assert!(m("order.#", "order"));
        assert!(m("order.#", "order.shipped.tracking"));
        assert!(!m("order.#", "orders.shipped"));
        assert!(m("#", "a.b.c"));
        assert!(m("#.created", "user.created"));
        assert!(m("#.created", "created"));
        assert!(m("*.*", "a.b"));
        assert!(!m("*", "a.b"));
        assert!(m("a.#.z", "a.z"));
        assert!(m("a.#.z", "a.b.c.z"));
        assert!(m("#.#", "x"));
    }

    /// The match table as first written (a fresh row per pattern word), for comparison.
    fn reference(pattern: &Pattern, name: &str) -> bool {
        let parts: Vec<&str> = name.split('.').collect();
        let mut reach = vec![false; parts.len() + 1];
        reach[0] = true;
        for word in pattern.words.iter() {
            let mut next = vec![false; parts.len() + 1];
            match word {
                Word::Any => {
                    let mut any = false;
                    for j in 0..=parts.len() {
                        any |= reach[j];
                        next[j] = any;
                    }
                }
                Word::One => next[1..].copy_from_slice(&reach[..parts.len()]),
                Word::Literal(lit) => {
                    for j in 0..parts.len() {
                        next[j + 1] = reach[j] && parts[j] == &**lit;
                    }
                }
            }
            reach = next;
        }
        reach[parts.len()]
    }

    #[test]
    fn matches_as_the_reference_table_on_short_and_long_names() {
        let patterns = [
            "#", "a.#", "#.a", "a.*.#.b", "*.*.*", "a.#.a.#", "#.#.b", "a", "*",
        ];
        let mut names: Vec<String> = ["a", "b", "a.b", "a.a.b", "b.a", "a.x.y.b", "a.a.a"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        // Around the length where the rows move off the stack.
        for words in [30, 31, 32, 33, 64] {
            names.push(vec!["a"; words].join("."));
            names.push(format!("{}.b", vec!["a"; words - 1].join(".")));
        }
        for p in patterns {
            let pattern = Pattern::parse(p).unwrap();
            for name in &names {
                assert_eq!(
                    pattern.matches(name),
                    reference(&pattern, name),
                    "{p} on {name}"
                );
            }
        }
    }

    #[test]
    fn invalid_patterns() {
        for bad in ["", ".", "a..b", "a.", ".a", "user*", "us#er", "a b", "a.é"] {
            let err = Pattern::parse(bad).unwrap_err();
            assert_eq!(err.pattern(), bad);
            assert!(err.to_string().contains("invalid pattern"), "{err}");
        }
    }
}
