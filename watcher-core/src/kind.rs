//! The kinds of change, by their `--events` names: one definition, tied to
//! the kernel's [`event_kind`] values.

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
}

impl Kind {
    pub const ALL: [Self; 9] = [
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Rename,
        Self::Mkdir,
        Self::Link,
        Self::Truncate,
        Self::Attrib,
        Self::CloseWrite,
    ];

    /// What is watched unless told otherwise: every change of a tree's
    /// contents (not `attrib` and `close_write`).
    pub const DEFAULT: &[Self] = &[
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Rename,
        Self::Mkdir,
        Self::Link,
        Self::Truncate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Mkdir => "mkdir",
            Self::Link => "link",
            Self::Truncate => "truncate",
            Self::Attrib => "attrib",
            Self::CloseWrite => "close_write",
        }
    }

    /// The kernel's [`event_kind`] value.
    pub fn id(self) -> u32 {
        match self {
            Self::Write => event_kind::WRITE,
            Self::Create => event_kind::CREATE,
            Self::Delete => event_kind::DELETE,
            Self::Rename => event_kind::RENAME,
            Self::Mkdir => event_kind::MKDIR,
            Self::Link => event_kind::LINK,
            Self::Truncate => event_kind::TRUNCATE,
            Self::Attrib => event_kind::ATTRIB,
            Self::CloseWrite => event_kind::CLOSE_WRITE,
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    /// Bits of a set of kinds, as the kernel's `EVENT_MASK`.
    pub fn mask(kinds: &[Self]) -> u32 {
        kinds.iter().fold(0, |m, k| m | event_kind::bit(k.id()))
    }
}
