//! Byte ranges of a header value, so a parsed message can keep what its checks parsed
//! (the top via-parm, the From and To tags) without a lifetime, and hand it out again
//! without parsing. Four bytes each: a message is moved by value many times.

/// A range of a value (start, length), or one of three states of a param: absent
/// ([`Span::ABSENT`]), present without a value ([`Span::FLAG`]), not looked at
/// ([`Span::UNKNOWN`]). Values past 64 KiB are not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span(u16, u16);

impl Span {
    pub(crate) const ABSENT: Span = Span(u16::MAX, u16::MAX);
    pub(crate) const FLAG: Span = Span(u16::MAX, 0);
    pub(crate) const UNKNOWN: Span = Span(u16::MAX, 1);

    /// The range of `part` inside `base` (`part` must borrow from it; an empty part may
    /// be anywhere); `None` if it lies outside or beyond 64 KiB.
    pub(crate) fn of(base: &str, part: &str) -> Option<Span> {
        if part.is_empty() {
            return Some(Span(0, 0));
        }
        let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
        if start.checked_add(part.len())? > base.len() {
            return None;
        }
        let span = Span(u16::try_from(start).ok()?, u16::try_from(part.len()).ok()?);
        // The states' starts are never a real one (values stay below 64 KiB).
        (span.0 != u16::MAX).then_some(span)
    }

    /// The text of a range in `base` (the value it was taken from).
    pub(crate) fn get(self, base: &str) -> Option<&str> {
        let start = usize::from(self.0);
        base.get(start..start + usize::from(self.1))
    }

    /// A param as a parser notes it: absent, a flag without value, or its value.
    pub(crate) fn of_param(base: &str, p: Option<Option<&str>>) -> Option<Span> {
        match p {
            None => Some(Span::ABSENT),
            Some(None) => Some(Span::FLAG),
            Some(Some(v)) => Span::of(base, v),
        }
    }

    /// The param back ([`Span::of_param`]); `None` if not looked at or out of `base`.
    pub(crate) fn get_param(self, base: &str) -> Option<Option<Option<&str>>> {
        Some(match self {
            Span::UNKNOWN => return None,
            Span::ABSENT => None,
            Span::FLAG => Some(None),
            s => Some(Some(s.get(base)?)),
        })
    }
}

impl Default for Span {
    fn default() -> Self {
        Span::UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_param_states_round_trip() {
        let v = "SIP/2.0/UDP h;branch=z9;rport";
        let branch = v.get(21..23).unwrap();
        let s = Span::of(v, branch).unwrap();
        assert_eq!(s.get(v), Some("z9"));
        assert_eq!(Span::of(v, "elsewhere"), None);
        for p in [None, Some(None), Some(Some(branch)), Some(Some(""))] {
            assert_eq!(Span::of_param(v, p).unwrap().get_param(v), Some(p));
        }
        assert_eq!(Span::UNKNOWN.get_param(v), None);
        assert_eq!(Span::default(), Span::UNKNOWN);
    }
}
