//! [`Table`]: a table name checked once and quoted for SQL.

use super::error::Error;

/// A table name, optionally schema-qualified (`schema.table`), each part an SQL identifier of
/// ASCII letters, digits and `_`, starting with a letter or `_`, at most 63 bytes: so it can be
/// put in SQL text safely, quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    /// The name as given.
    pub(crate) name: String,
    /// The name quoted for SQL (`"schema"."table"`).
    pub(crate) quoted: String,
    /// The last part, for the names of its index and notification channel.
    pub(crate) base: String,
}

impl Table {
    pub(crate) fn parse(name: &str) -> Result<Table, Error> {
        let parts: Vec<&str> = name.split('.').collect();
        let valid = |part: &str| {
            let mut chars = part.chars();
            part.len() <= 63
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if parts.len() > 2 || !parts.iter().all(|p| valid(p)) {
            let shown: String = name.chars().take(80).collect();
            return Err(Error::Invalid(format!(
                "`{shown}` is not a table name: one or two identifiers of letters, digits and \
                 `_` (at most 63 bytes each), starting with a letter or `_`"
            )));
        }
        let quoted = parts
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(".");
        Ok(Table {
            name: name.to_owned(),
            quoted,
            base: parts[parts.len() - 1].to_owned(),
        })
    }

    /// A name derived from the table's (`{base}_{suffix}`), quoted, within 63 bytes.
    pub(crate) fn derived(&self, suffix: &str) -> String {
        let mut base = self.base.clone();
        base.truncate(63 - suffix.len() - 1);
        format!("\"{base}_{suffix}\"")
    }

    /// The advisory-lock class of the table's keys (the first of the two lock keys; the key's
    /// hash is the second), so that outboxes do not block each other.
    pub(crate) fn lock_class(&self) -> i32 {
        // FNV-1a, folded to 31 bits: stable across processes and versions.
        let hash = self.name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        i32::try_from(hash & 0x7fff_ffff).unwrap_or(0)
    }

    /// The notification channel of the table (unquoted, for `pg_notify`).
    pub(crate) fn channel(&self) -> String {
        let mut base = self.name.replace('.', "_");
        base.truncate(55);
        format!("{base}_staged")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_break_out_of_the_sql_are_refused() {
        for bad in [
            "",
            "1st",
            "a b",
            "a\"; DROP TABLE x; --",
            "a.b.c",
            "é",
            &"x".repeat(64),
        ] {
            assert!(Table::parse(bad).is_err(), "{bad:?}");
        }
        let t = Table::parse("shop.outbox_1").unwrap();
        assert_eq!(t.quoted, "\"shop\".\"outbox_1\"");
        assert_eq!(t.derived("pending"), "\"outbox_1_pending\"");
        assert_eq!(t.channel(), "shop_outbox_1_staged");
        assert!(
            Table::parse(&"x".repeat(63))
                .unwrap()
                .derived("pending")
                .len()
                <= 65
        );
    }
}
