//! Three-way field updates: keep, set, clear.

use serde::{Deserialize, Serialize};

/// What a partial update does to one optional field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Patch<T> {
    /// Leave the field as it is (the field was not in the input).
    #[default]
    Keep,
    /// Set the field to this value.
    Set(T),
    /// Remove the value (the input said `null`).
    Clear,
}

impl<T: PartialEq + Clone> Patch<T> {
    /// Compares the patch with the current value: `Some(Some(v))` sets a new value,
    /// `Some(None)` clears a present value, `None` changes nothing.
    pub fn change(&self, current: Option<&T>) -> Option<Option<T>> {
        match self {
            Patch::Keep => None,
            Patch::Set(v) if current == Some(v) => None,
            Patch::Set(v) => Some(Some(v.clone())),
            Patch::Clear if current.is_none() => None,
            Patch::Clear => Some(None),
        }
    }

    /// True when the patch leaves the field alone.
    pub fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }

    /// The value being set, if any.
    pub fn set_value(&self) -> Option<&T> {
        match self {
            Patch::Set(v) => Some(v),
            _ => None,
        }
    }

    /// The field's value after the patch.
    pub fn after(&self, current: Option<&T>) -> Option<T> {
        match self {
            Patch::Keep => current.cloned(),
            Patch::Set(v) => Some(v.clone()),
            Patch::Clear => None,
        }
    }

    /// Converts the value, keeping the keep/set/clear shape.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Patch<U>, E> {
        Ok(match self {
            Patch::Keep => Patch::Keep,
            Patch::Set(v) => Patch::Set(f(v)?),
            Patch::Clear => Patch::Clear,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Patch;

    #[test]
    fn only_real_changes_are_changes() {
        assert_eq!(Patch::<i32>::Keep.change(Some(&1)), None);
        assert_eq!(Patch::Set(1).change(Some(&1)), None);
        assert_eq!(Patch::Set(2).change(Some(&1)), Some(Some(2)));
        assert_eq!(Patch::Set(2).change(None), Some(Some(2)));
        assert_eq!(Patch::<i32>::Clear.change(None), None);
        assert_eq!(Patch::<i32>::Clear.change(Some(&1)), Some(None));
    }
}
