//! Event names: the default derived from a type name, and the validity rule.

/// `UserCreated` -> `user.created`, `HTTPRequestSent` -> `http.request.sent`,
/// `OrderV2Shipped` -> `order.v2.shipped`.
pub(crate) fn dotted_snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.trim_start_matches("r#").chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // The last capital of an acronym starts a new word: `HTTPRequest`.
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.join(".")
}

/// Checks the naming rule; the error says what is wrong.
pub(crate) fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an event name must not be empty".into());
    }
    for word in name.split('.') {
        if word.is_empty() {
            return Err(format!(
                "invalid event name `{name}`: words are separated by single dots, with no dot at either end"
            ));
        }
        if let Some(bad) = word
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "invalid event name `{name}`: `{bad}` is not allowed; use ASCII letters, digits, `_`, `-`, and `.` between words"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        for (ident, name) in [
            ("UserCreated", "user.created"),
            ("HTTPRequestSent", "http.request.sent"),
            ("OrderV2Shipped", "order.v2.shipped"),
            ("Ping", "ping"),
            ("user_created", "user.created"),
            ("IOError", "io.error"),
            ("ABC", "abc"),
        ] {
            assert_eq!(dotted_snake_case(ident), name, "{ident}");
        }
    }

    #[test]
    fn validation() {
        for ok in ["a", "user.created", "a-b.c_d.E9"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a.*", "user#", "ü"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
