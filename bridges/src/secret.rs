//! Keeping passwords out of logs and errors.

/// `text` with every occurrence of `secret` replaced by `***`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_owned(),
    }
}
