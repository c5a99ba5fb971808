//! The label selectors the planner tests every target against (windows, waves), matched once per
//! target when a commit is validated (issue #17).
//!
//! A selector test reads the target's labels, a map whose keys and values live in allocations
//! of their own: on a 10,000-target fleet each pass that tested them (the window gate, then the
//! wave assignment, in another order) missed the cache on nearly every label it read, and the
//! wave assignment alone spent most of its time there. [`validate`](super::validate) reads each
//! target's labels once, next to its policies, and keeps one bit per selector of the commit in
//! [`Selected`]; a [`LabelView`] answers from the bit.
//!
//! # Guarantees
//! - **Same answer as [`selector_matches`]**: a bit is used only when the selector asked about
//!   is the one the bit was computed for (the same address in the validated commit, and equal
//!   content) and the target's bits were computed against this very table (tables are numbered
//!   per process; a target built elsewhere has bits of no table). Anything else — a copy or
//!   another commit's selector at another address, the 65th distinct selector — is matched
//!   against the labels as before (a selector at the table's address with equal content gets
//!   the bit, which is then its answer too). A debug build checks every answer against [`selector_matches`] (the whole test
//!   suite runs with that check).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Labels;
use super::validate::selector_matches;

/// At most this many selectors get a bit (one `u64`); others are matched against the labels.
const MAX_SELECTORS: usize = 64;

/// The selectors of one validated commit that get a bit, in bit order: each with the address
/// it has in the commit's [`Desired`](super::Desired) (how callers name it) and its content.
#[derive(Debug, Clone, Default)]
pub struct SelectorTable {
    /// This table's number in the process (0: the empty default, which no target's bits name).
    id: u64,
    selectors: Vec<(usize, Labels)>,
    /// The selectors by the label keys they test: each key with the selectors (by bit) naming
    /// it and the value each wants, so [`Self::select`] reads each key of a target once.
    by_key: Vec<(String, Vec<(usize, String)>)>,
}

/// Which of a [`SelectorTable`]'s selectors a target's labels match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selected {
    /// The table the bits were computed against (0: none).
    table: u64,
    bits: u64,
}

impl SelectorTable {
    /// A table of `selectors` (each named by its address: the same selector listed twice gets
    /// one bit), the first [`MAX_SELECTORS`] distinct ones.
    pub fn of<'a>(selectors: impl IntoIterator<Item = &'a Labels>) -> SelectorTable {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut table = SelectorTable {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            selectors: Vec::new(),
            by_key: Vec::new(),
        };
        for selector in selectors {
            let address = std::ptr::from_ref(selector) as usize;
            if table.selectors.len() < MAX_SELECTORS && !table.selectors.iter().any(|(a, _)| *a == address) {
                let bit = table.selectors.len();
                for (key, value) in selector {
                    let wanted = match table.by_key.iter_mut().find(|(k, _)| k == key) {
                        Some((_, wanted)) => wanted,
                        None => {
                            table.by_key.push((key.clone(), Vec::new()));
                            &mut table.by_key.last_mut().expect("just pushed").1
                        }
                    };
                    wanted.push((bit, value.clone()));
                }
                table.selectors.push((address, selector.clone()));
            }
        }
        table
    }

    /// How many selectors have a bit.
    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    /// Whether no selector has a bit.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// Matches every selector of the table against `labels`: a selector matches when every
    /// key it tests has the value it wants, counted key by key (each key of `labels` read once).
    pub fn select(&self, labels: &Labels) -> Selected {
        let mut matched = [0usize; MAX_SELECTORS];
        for (key, wanted) in &self.by_key {
            if let Some(value) = labels.get(key) {
                for (bit, want) in wanted {
                    matched[*bit] += usize::from(want == value);
                }
            }
        }
        let bits = self
            .selectors
            .iter()
            .enumerate()
            .filter(|(bit, (_, selector))| matched[*bit] == selector.len())
            .fold(0u64, |bits, (bit, _)| bits | 1 << bit);
        debug_assert!(
            self.selectors
                .iter()
                .enumerate()
                .all(|(bit, (_, s))| (bits & 1 << bit != 0) == selector_matches(Some(s), labels)),
            "selector bits of {labels:?}"
        );
        Selected { table: self.id, bits }
    }

    /// The bit of `selector`, when it is the table's selector at that address.
    fn bit_of(&self, selector: &Labels) -> Option<usize> {
        let address = std::ptr::from_ref(selector) as usize;
        self.selectors
            .iter()
            .position(|(a, kept)| *a == address && kept == selector)
    }

    /// How bits matched against `earlier` carry over to this table: when both hold equal
    /// selectors in the same order, matching a target against either gives the same bits.
    pub fn carry_from(&self, earlier: &SelectorTable) -> Option<Carry> {
        let same = earlier.id != 0
            && self.id != 0
            && earlier.selectors.len() == self.selectors.len()
            && earlier
                .selectors
                .iter()
                .zip(&self.selectors)
                .all(|((_, a), (_, b))| a == b);
        same.then_some(Carry {
            from: earlier.id,
            to: self.id,
        })
    }

    /// `selector` with its bit in this table, found once for testing many targets
    /// ([`LabelView::matches_resolved`]).
    pub fn resolve<'s>(&self, selector: &'s Labels) -> ResolvedSelector<'s> {
        ResolvedSelector {
            selector,
            table: self.id,
            bit: self.bit_of(selector),
        }
    }
}

/// Bits of one table that hold for another with the same selectors ([`SelectorTable::carry_from`]).
#[derive(Debug, Clone, Copy)]
pub struct Carry {
    from: u64,
    to: u64,
}

impl Carry {
    /// `selected` as bits of the later table, if they were bits of the earlier one.
    pub fn apply(&self, selected: Selected) -> Option<Selected> {
        (selected.table == self.from).then_some(Selected {
            table: self.to,
            bits: selected.bits,
        })
    }
}

/// A selector with its bit in one [`SelectorTable`] ([`SelectorTable::resolve`]).
#[derive(Debug, Clone, Copy)]
pub struct ResolvedSelector<'s> {
    selector: &'s Labels,
    table: u64,
    bit: Option<usize>,
}

/// A target's labels with the bits [`SelectorTable::select`] found for them: answers selector
/// tests from a bit where it can (see the module's guarantees).
#[derive(Debug, Clone, Copy)]
pub struct LabelView<'a> {
    labels: &'a Labels,
    selected: Selected,
    table: Option<&'a SelectorTable>,
}

impl<'a> LabelView<'a> {
    /// `labels` with `selected`, computed against `table`.
    pub fn new(labels: &'a Labels, selected: Selected, table: &'a SelectorTable) -> Self {
        LabelView {
            labels,
            selected,
            table: Some(table),
        }
    }

    /// `labels` alone: every test reads them.
    pub fn plain(labels: &'a Labels) -> Self {
        LabelView {
            labels,
            selected: Selected::default(),
            table: None,
        }
    }

    /// The labels themselves.
    pub fn labels(&self) -> &'a Labels {
        self.labels
    }

    /// [`selector_matches`]`(selector, labels)`.
    pub fn matches(&self, selector: Option<&Labels>) -> bool {
        match (selector, self.table) {
            (None, _) => true,
            (Some(selector), Some(table)) => self.matches_resolved(&table.resolve(selector)),
            (Some(selector), None) => selector_matches(Some(selector), self.labels),
        }
    }

    /// [`selector_matches`] of the resolved selector against the labels: the bit when both were found
    /// against the same table, else the labels.
    pub fn matches_resolved(&self, resolved: &ResolvedSelector) -> bool {
        let bit = resolved
            .bit
            .filter(|_| resolved.table != 0 && resolved.table == self.selected.table);
        let matches = match bit {
            Some(i) => self.selected.bits & (1 << i) != 0,
            None => selector_matches(Some(resolved.selector), self.labels),
        };
        debug_assert_eq!(
            matches,
            selector_matches(Some(resolved.selector), self.labels),
            "selector bit {bit:?} disagrees with the labels"
        );
        matches
    }

    /// The table this view's bits were computed against, if any.
    pub fn table(&self) -> Option<&'a SelectorTable> {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Every answer equals a direct match: selectors of the table (matching and not), one
    /// outside it with the same content as one inside (answered from the labels), an absent
    /// selector, and bits of another table or of none.
    #[test]
    fn views_answer_as_matching_the_labels_does() {
        let eu = labels(&[("region", "eu")]);
        let ring0 = labels(&[("ring", "0")]);
        let eu_prod = labels(&[("region", "eu"), ("env", "prod")]);
        let table = SelectorTable::of([&eu, &ring0, &eu_prod, &eu]);
        assert_eq!(table.len(), 3, "the same selector listed twice gets one bit");
        let copy_of_ring0 = ring0.clone();
        let other = SelectorTable::of([&ring0]);
        for target in [
            labels(&[("region", "eu"), ("ring", "1"), ("env", "prod")]),
            labels(&[("region", "us"), ("ring", "0")]),
            // One of eu_prod's two keys matches, the other is missing.
            labels(&[("region", "eu"), ("ring", "0")]),
            labels(&[("region", "eu"), ("env", "dev")]),
            Labels::new(),
        ] {
            let selected = table.select(&target);
            let views = [
                LabelView::new(&target, selected, &table),
                LabelView::new(&target, other.select(&target), &table),
                LabelView::new(&target, Selected::default(), &table),
                LabelView::plain(&target),
            ];
            for view in views {
                for selector in [&eu, &ring0, &eu_prod, &copy_of_ring0] {
                    assert_eq!(
                        view.matches(Some(selector)),
                        selector_matches(Some(selector), &target),
                        "{selector:?} on {target:?}"
                    );
                }
                assert!(view.matches(None));
            }
        }
    }

    /// The bits are what answers for the table's own selectors: a view whose bits say the
    /// opposite of the labels answers from the bits (so the planner really skips the labels),
    /// and only for those selectors. Checked in release terms: the debug check is what catches
    /// such a disagreement, so it must fire.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "disagrees with the labels"))]
    fn bits_answer_for_the_tables_selectors() {
        let eu = labels(&[("region", "eu")]);
        let table = SelectorTable::of([&eu]);
        let us = labels(&[("region", "us")]);
        let forged = Selected {
            table: table.id,
            bits: 1,
        };
        let view = LabelView::new(&us, forged, &table);
        assert!(view.matches(Some(&eu)), "answered from the bit");
        assert!(!view.matches(Some(&eu.clone())), "a copy is matched against the labels");
    }

    /// Bits carry over only between tables of equal selectors in the same order, and only bits
    /// of the earlier table.
    #[test]
    fn bits_carry_over_to_a_table_of_the_same_selectors_only() {
        let (eu, ring0) = (labels(&[("region", "eu")]), labels(&[("ring", "0")]));
        let (eu_again, ring0_again) = (eu.clone(), ring0.clone());
        let earlier = SelectorTable::of([&eu, &ring0]);
        let same = SelectorTable::of([&eu_again, &ring0_again]);
        let reordered = SelectorTable::of([&ring0_again, &eu_again]);
        let fewer = SelectorTable::of([&eu_again]);
        let target = labels(&[("region", "eu"), ("ring", "1")]);
        let selected = earlier.select(&target);
        let carry = same.carry_from(&earlier).expect("same selectors");
        let carried = carry.apply(selected).expect("bits of the earlier table");
        assert_eq!(carried, same.select(&target));
        assert!(carry.apply(same.select(&target)).is_none(), "bits of another table");
        assert!(carry.apply(Selected::default()).is_none());
        assert!(reordered.carry_from(&earlier).is_none());
        assert!(fewer.carry_from(&earlier).is_none());
        assert!(same.carry_from(&SelectorTable::default()).is_none());
    }

    /// More distinct selectors than bits: the rest are matched against the labels.
    #[test]
    fn selectors_past_the_bits_are_matched_against_the_labels() {
        let selectors: Vec<Labels> = (0..MAX_SELECTORS + 8)
            .map(|i| labels(&[("n", &i.to_string())]))
            .collect();
        let table = SelectorTable::of(&selectors);
        assert_eq!(table.len(), MAX_SELECTORS);
        let target = labels(&[("n", &(MAX_SELECTORS + 3).to_string())]);
        let view = LabelView::new(&target, table.select(&target), &table);
        let matching: Vec<usize> = (0..selectors.len())
            .filter(|&i| view.matches(Some(&selectors[i])))
            .collect();
        assert_eq!(matching, vec![MAX_SELECTORS + 3]);
    }
}
