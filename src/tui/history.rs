//! Undo and redo of recipe edits: snapshots of the edited document.
//!
//! A [`super::doc::Doc`] is small (model summaries, values, the layer
//! table), so each step keeps the whole document as it was, with a word on
//! what the step did. Snapshots cannot drift from the edits that made them,
//! which diffs or inverse operations could.

/// How many steps are kept (the issue asks for at least 100).
pub const DEPTH: usize = 200;

/// The undo and redo stacks of the edited recipe: each step is the
/// state before an edit and what the edit was, at most [`DEPTH`] of them.
#[derive(Clone, Debug)]
pub struct History<T> {
    undo: Vec<(T, String)>,
    redo: Vec<(T, String)>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History {
            undo: Vec::new(),
            redo: Vec::new(),
        }
    }
}

impl<T> History<T> {
    /// Record `before`, the state an edit described by `what` changed.
    /// Clears the redo list, as every editor does.
    pub fn record(&mut self, before: T, what: impl Into<String>) {
        self.undo.push((before, what.into()));
        if self.undo.len() > DEPTH {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    /// Step back: give `now`, get the state before the last edit and what
    /// that edit was.
    pub fn undo(&mut self, now: T) -> Result<(T, String), T> {
        match self.undo.pop() {
            Some((before, what)) => {
                self.redo.push((now, what.clone()));
                Ok((before, what))
            }
            None => Err(now),
        }
    }

    /// Step forward again after an undo.
    pub fn redo(&mut self, now: T) -> Result<(T, String), T> {
        match self.redo.pop() {
            Some((after, what)) => {
                self.undo.push((now, what.clone()));
                Ok((after, what))
            }
            None => Err(now),
        }
    }

    /// Steps that can be undone.
    pub fn can_undo(&self) -> usize {
        self.undo.len()
    }
    /// Steps that can be redone.
    pub fn can_redo(&self) -> usize {
        self.redo.len()
    }
    /// Forget every step (a new recipe was opened).
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_redo_walk_both_ways_and_new_edits_drop_redo() {
        let mut h = History::default();
        let mut now = 0;
        for v in 1..=3 {
            h.record(now, format!("set {v}"));
            now = v;
        }
        let (b, what) = h.undo(now).unwrap();
        assert_eq!((b, what.as_str()), (2, "set 3"));
        let (b, _) = h.undo(b).unwrap();
        assert_eq!(b, 1);
        let (a, what) = h.redo(b).unwrap();
        assert_eq!((a, what.as_str()), (2, "set 2"));
        h.record(a, "set 9");
        assert!(h.redo(9).is_err(), "a new edit clears redo");
        assert_eq!(h.can_undo(), 3);
    }

    #[test]
    fn keeps_the_last_depth_steps() {
        let mut h = History::default();
        for v in 0..DEPTH + 50 {
            h.record(v, "x");
        }
        assert_eq!(h.can_undo(), DEPTH);
        let mut now = usize::MAX;
        let mut last = 0;
        while let Ok((b, _)) = h.undo(now) {
            last = b;
            now = b;
        }
        assert_eq!(last, 50, "the oldest kept step");
    }
}
