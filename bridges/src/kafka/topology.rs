//! Topics declared in code, created through the admin client before use.

use std::collections::BTreeMap;

/// A topic to create: name, partitions, replication factor and topic configs
/// (`retention.ms`, `cleanup.policy`…).
///
/// ```
/// use tidings_bridges::kafka::Topic;
///
/// let orders = Topic::new("orders").partitions(6).replication(3).config("retention.ms", "604800000");
/// assert_eq!(orders.name(), "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Topic {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) replication: i32,
    pub(crate) configs: BTreeMap<String, String>,
}

impl Topic {
    /// A topic with one partition and replication factor 1.
    pub fn new(name: impl Into<String>) -> Self {
        Topic {
            name: name.into(),
            partitions: 1,
            replication: 1,
            configs: BTreeMap::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of partitions (at least 1). One key always maps to one partition, so this
    /// bounds how many consumers of a group work side by side.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// The replication factor (at least 1).
    pub fn replication(mut self, replication: i32) -> Self {
        self.replication = replication.max(1);
        self
    }

    /// A topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }

    /// This topic's settings under another name.
    pub(crate) fn named(&self, name: &str) -> Topic {
        Topic {
            name: name.to_owned(),
            ..self.clone()
        }
    }
}
