//! Settings with a fixed set of values (`--format text`, `stdin_format =
//! "jsonl"`): each value's name and a line of help, defined once, for the
//! command line and the configuration file alike.

/// A setting with a fixed set of values.
pub trait Choice: Copy + PartialEq + 'static {
    /// Every value: itself, its name, a line of help.
    const CHOICES: &'static [(Self, &'static str, &'static str)];

    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(value, _, _)| *value == self)
            .map_or("", |(_, name, _)| name)
    }

    /// The value named `name`, or an error listing the names.
    fn parse(name: &str) -> Result<Self, String> {
        Self::CHOICES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(value, _, _)| *value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::CHOICES.iter().map(|(_, n, _)| *n).collect();
                format!("unknown value `{name}`, expected {}", names.join(", "))
            })
    }
}
