//! Keeping passwords out of logs and errors.
//!
//! People type passwords with `/`, `?`, `#` and `@` in them without percent-encoding them, so
//! the user-info of a URL is taken to be everything between `://` and the **last** `@`,
//! whatever a URL parser would make of the characters in between. A URL with an `@` in its
//! path or query is redacted more than it needs to be, never less.

/// The user-info part of `url` (between `://` and the last `@`), if any.
#[cfg(any(
    feature = "amqp",
    feature = "redis",
    feature = "jobs",
    feature = "postgres"
))]
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let at = rest.rfind('@')?;
    Some((start, &rest[..at]))
}

/// Characters that a user name shown in a redacted URL must not hold: with one of them, the
/// user-info was probably not split where the URL's author meant it to be.
#[cfg(any(
    feature = "amqp",
    feature = "redis",
    feature = "jobs",
    feature = "postgres"
))]
const SUSPECT: [char; 5] = ['/', '?', '#', '@', '%'];

/// The password in `url`, if it has one: the user-info after its first `:`.
#[cfg(any(
    feature = "amqp",
    feature = "redis",
    feature = "jobs",
    feature = "postgres"
))]
pub(crate) fn password_of(url: &str) -> Option<&str> {
    let (_, info) = userinfo(url)?;
    let (_, password) = info.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password replaced by `***` (`scheme://user:***@host...`). The user name is
/// kept when it is plain; a user-info that does not split cleanly is replaced whole.
#[cfg(any(
    feature = "amqp",
    feature = "redis",
    feature = "jobs",
    feature = "postgres"
))]
pub(crate) fn redact(url: &str) -> String {
    let Some((start, info)) = userinfo(url) else {
        return url.to_owned();
    };
    let shown = match info.split_once(':') {
        Some((user, _)) if !user.contains(SUSPECT) => format!("{user}:***"),
        None if !info.contains(SUSPECT) => return url.to_owned(),
        _ => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..start], &url[start + info.len()..])
}

/// `text` with every occurrence of `secret`, as written and percent-decoded (what a client
/// library may quote), replaced by `***`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(secret, "***");
    if let Some(decoded) = percent_decoded(secret).filter(|d| !d.is_empty() && d != secret) {
        out = out.replace(&decoded, "***");
    }
    out
}

/// `text` with its `%XX` escapes decoded, if that gives UTF-8; a `%` not followed by two hex
/// digits is kept as it is.
fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(all(
    test,
    any(
        feature = "amqp",
        feature = "redis",
        feature = "jobs",
        feature = "postgres"
    )
))]
mod tests {
    use super::*;

    /// URLs as people type them, with the password each holds.
    const HOSTILE: &[(&str, &str)] = &[
        ("amqp://user:pa/ss@host/%2f", "pa/ss"),
        ("amqp://user:pa?ss@host:5672/%2f", "pa?ss"),
        ("amqp://user:pa#ss@host/%2f", "pa#ss"),
        ("amqp://user:p@ss@host/%2f", "p@ss"),
        ("amqp://user:p:a:ss@host/%2f", "p:a:ss"),
        ("amqp://user:/?#@@host/vh", "/?#@"),
        ("amqp://user:%zz%4@host/%2f", "%zz%4"),
        ("amqp://user:p%40ss@host/%2f", "p%40ss"),
        ("amqps://user:s3cr3t@[::1]:5671/%2f", "s3cr3t"),
        ("amqp://:only-a-password@host", "only-a-password"),
        ("redis://:pa/ss@127.0.0.1:6379/0", "pa/ss"),
        ("rediss://default:pa?ss#x@[2001:db8::1]:6380", "pa?ss#x"),
        ("redis://user:ö/ü@host", "ö/ü"),
    ];

    #[test]
    fn no_password_survives_redaction_whatever_it_holds() {
        for (url, password) in HOSTILE {
            let shown = redact(url);
            assert!(!shown.contains(password), "{url} -> {shown}");
            assert!(shown.contains("***@"), "{url} -> {shown}");
            assert_eq!(password_of(url), Some(*password), "{url}");
        }
    }

    #[test]
    fn what_is_not_secret_stays_readable() {
        assert_eq!(
            redact("amqp://guest:s3cr3t@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("amqps://u:p%40ss@host/vh?heartbeat=5"),
            "amqps://u:***@host/vh?heartbeat=5"
        );
        assert_eq!(
            redact("rediss://default:x/y@[::1]:6380/2"),
            "rediss://default:***@[::1]:6380/2"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact("amqp://user@host"), "amqp://user@host");
        assert_eq!(redact("not a url"), "not a url");
        // A user-info that does not split cleanly is hidden whole.
        assert_eq!(redact("amqp://us/er:pw@host"), "amqp://***@host");
        assert_eq!(redact("amqp://pa/ss@host"), "amqp://***@host");
        // An `@` in the path: redacted more than needed, never less.
        assert_eq!(redact("amqp://host/a@b"), "amqp://***@b");
    }

    #[test]
    fn scrubbing_hides_the_written_and_the_decoded_password() {
        let text = "login as user with p%40ss (p@ss) refused";
        assert_eq!(
            scrub(text, Some("p%40ss")),
            "login as user with *** (***) refused"
        );
        assert_eq!(scrub("a %zz b", Some("%zz")), "a *** b");
        assert_eq!(scrub("unchanged", None), "unchanged");
        assert_eq!(scrub("unchanged", Some("")), "unchanged");
    }
}
