//! rr: round robin (ip_vs_rr.c). Weight magnitude is ignored; weight 0 and OVERLOAD
//! are skipped. The cursor is the last returned destination, or the list head.

use std::sync::Arc;

use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index of the last returned destination; `None` = the list head.
    cursor: Option<usize>,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        match change {
            DestChange::Added => self.cursor = self.cursor.map(|c| c + 1),
            DestChange::Deleted { index } => {
                self.cursor = match self.cursor {
                    // The cursor moves to the element before the deleted one (or head).
                    Some(c) if c == index => index.checked_sub(1),
                    Some(c) if c > index => Some(c - 1),
                    other => other,
                }
            }
            DestChange::Edited { .. } | DestChange::ServiceEdited => {}
        }
        if self.cursor.is_some_and(|c| c >= dests.len()) {
            self.cursor = None;
        }
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        // Walk forward from the cursor (excluding it), wrapping past the head once; the
        // cursor itself is examined last. From the head, one lap covers every dest.
        let start = self.cursor.map_or(0, |c| c + 1);
        for k in 0..n {
            let i = (start + k) % n;
            let d = &dests[i];
            if !d.is_overloaded() && d.weight() > 0 {
                self.cursor = Some(i);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, picks};
    use super::*;

    #[test]
    fn tv_rr_1_head_insertion_order() {
        // Added A(1), B(2), C(3) -> list C, B, A.
        let dests = vec![dest(3, 1), dest(2, 1), dest(1, 1)];
        let mut s = RoundRobin::default();
        let got = picks(&mut s, &dests, 7);
        let want: Vec<_> = [3, 2, 1, 3, 2, 1, 3].iter().map(|&x| Some(x)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tv_rr_2_weight_zero_skipped() {
        let dests = vec![dest(3, 1), dest(2, 0), dest(1, 1)];
        let mut s = RoundRobin::default();
        let got = picks(&mut s, &dests, 5);
        let want: Vec<_> = [3, 1, 3, 1, 3].iter().map(|&x| Some(x)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tv_rr_3_list_order() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = RoundRobin::default();
        let got = picks(&mut s, &dests, 4);
        let want: Vec<_> = [1, 2, 3, 1].iter().map(|&x| Some(x)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn single_eligible_returned_every_time_and_none_when_all_quiesced() {
        let dests = vec![dest(1, 0), dest(2, 1)];
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &dests, 3), vec![Some(2); 3]);
        let dests = vec![dest(1, 0), dest(2, 0)];
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &dests, 1), vec![None]);
    }

    #[test]
    fn delete_of_cursor_moves_it_back() {
        let mut dests = vec![dest(3, 1), dest(2, 1), dest(1, 1)];
        let mut s = RoundRobin::default();
        assert_eq!(picks(&mut s, &dests, 2), vec![Some(3), Some(2)]);
        dests.remove(1);
        s.update(&dests, 0, DestChange::Deleted { index: 1 });
        // Cursor now at C (index 0): next is A.
        assert_eq!(picks(&mut s, &dests, 3), vec![Some(1), Some(3), Some(1)]);
    }
}
