//! Keeping passwords out of logs and errors.

/// The user-info part of `url` (between `://` and the `@` before the host), if any.
#[cfg(any(feature = "amqp", feature = "redis", feature = "jobs"))]
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((start, &rest[..at]))
}

/// The password in `url`, if it has one.
#[cfg(any(feature = "amqp", feature = "redis", feature = "jobs"))]
pub(crate) fn password_of(url: &str) -> Option<&str> {
    let (_, info) = userinfo(url)?;
    let (_, password) = info.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password replaced by `***`.
#[cfg(any(feature = "amqp", feature = "redis", feature = "jobs"))]
pub(crate) fn redact(url: &str) -> String {
    match (userinfo(url), password_of(url)) {
        (Some((start, info)), Some(_)) => {
            let user = info.split_once(':').map_or(info, |(user, _)| user);
            format!("{}{user}:***{}", &url[..start], &url[start + info.len()..])
        }
        _ => url.to_owned(),
    }
}

/// `text` with every occurrence of `secret` replaced by `***`.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_owned(),
    }
}
