//! The kinds of change, by their `--events` names: one table, tied to the
//! kernel's [`event_kind`] values.

use watcher_common::event_kind;

/// What happened, by its `--events` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Write,
    Create,
    Delete,
    Rename,
    Mkdir,
    Link,
    Truncate,
    Attrib,
    CloseWrite,
    Modify,
}

/// Every kind, in the enum's order: its name, the kernel's value, and
/// whether it is watched unless told otherwise (every change of a tree's
/// contents is; `attrib`, `close_write` and `modify`, every write, are
/// asked for).
const TABLE: [(Kind, &str, u32, bool); 10] = [
    (Kind::Write, "write", event_kind::WRITE, true),
    (Kind::Create, "create", event_kind::CREATE, true),
    (Kind::Delete, "delete", event_kind::DELETE, true),
    (Kind::Rename, "rename", event_kind::RENAME, true),
    (Kind::Mkdir, "mkdir", event_kind::MKDIR, true),
    (Kind::Link, "link", event_kind::LINK, true),
    (Kind::Truncate, "truncate", event_kind::TRUNCATE, true),
    (Kind::Attrib, "attrib", event_kind::ATTRIB, false),
    (
        Kind::CloseWrite,
        "close_write",
        event_kind::CLOSE_WRITE,
        false,
    ),
    (Kind::Modify, "modify", event_kind::MODIFY, false),
];

impl Kind {
    pub const ALL: [Self; TABLE.len()] = {
        let mut all = [Self::Write; TABLE.len()];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    /// What is watched unless told otherwise.
    pub fn defaults() -> Vec<Self> {
        TABLE.iter().filter(|row| row.3).map(|row| row.0).collect()
    }

    fn row(self) -> &'static (Self, &'static str, u32, bool) {
        &TABLE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The kernel's [`event_kind`] value.
    pub fn id(self) -> u32 {
        self.row().2
    }

    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|row| row.2 == id).map(|row| row.0)
    }

    /// Bits of a set of kinds, as the kernel's `EVENT_MASK`.
    pub fn mask(kinds: &[Self]) -> u32 {
        kinds.iter().fold(0, |m, k| m | event_kind::bit(k.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_kind_and_kernel_value() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, i, "{}", row.1);
            assert_eq!(Kind::from_id(row.2), Some(row.0));
        }
        assert_eq!(TABLE.len() as u32, event_kind::COUNT);
        assert_eq!(
            Kind::defaults()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>(),
            [
                "write", "create", "delete", "rename", "mkdir", "link", "truncate"
            ]
        );
    }
}
