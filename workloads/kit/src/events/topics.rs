//! Topic naming: every topic of a platform under one configured prefix.

/// Topic naming: `<prefix>.<name>`, e.g. `food.orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (validated by the configuration).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The full name of the topic called `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The full names of several topics.
    pub fn names(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|name| self.name(name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_named_under_the_prefix() {
        assert_eq!(Topics::new("food").name("orders"), "food.orders");
        assert_eq!(
            Topics::new("f").names(&["orders", "kitchen"]),
            ["f.orders", "f.kitchen"]
        );
    }
}
