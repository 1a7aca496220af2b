//! The backlog: a fixed-size ring of the newest bytes the guest wrote.

/// Keeps the last `capacity` bytes pushed into it; older bytes are overwritten.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    /// Index of the oldest byte.
    start: usize,
    len: usize,
}

impl Ring {
    /// A ring holding at most `capacity` bytes (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`, dropping the oldest bytes when full.
    pub fn push(&mut self, mut data: &[u8]) {
        let cap = self.buf.len();
        if data.len() >= cap {
            // Only the tail can survive: it fills the ring exactly.
            data = &data[data.len() - cap..];
            self.buf.copy_from_slice(data);
            self.start = 0;
            self.len = cap;
            return;
        }
        let end = (self.start + self.len) % cap;
        let first = data.len().min(cap - end);
        self.buf[end..end + first].copy_from_slice(&data[..first]);
        let rest = &data[first..];
        self.buf[..rest.len()].copy_from_slice(rest);
        let end = (end + data.len()) % cap;
        let total = self.len + data.len();
        if total > cap {
            self.start = end;
            self.len = cap;
        } else {
            self.len = total;
        }
    }

    /// The content, oldest first, as (up to) two slices.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        let first_len = self.len.min(cap - self.start);
        let first = &self.buf[self.start..self.start + first_len];
        let second = &self.buf[..self.len - first_len];
        (first, second)
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    fn content(r: &Ring) -> Vec<u8> {
        let (a, b) = r.as_slices();
        [a, b].concat()
    }

    #[test]
    fn keeps_everything_below_capacity() {
        let mut r = Ring::new(8);
        r.push(b"abc");
        r.push(b"de");
        assert_eq!(content(&r), b"abcde");
    }

    #[test]
    fn wraps_keeping_the_newest_bytes() {
        let mut r = Ring::new(8);
        r.push(b"abcdef");
        r.push(b"ghij");
        assert_eq!(content(&r), b"cdefghij");
        r.push(b"k");
        assert_eq!(content(&r), b"defghijk");
        assert_eq!(r.len(), 8);
    }

    #[test]
    fn a_push_larger_than_the_ring_keeps_its_tail() {
        let mut r = Ring::new(4);
        r.push(b"xy");
        r.push(b"0123456789");
        assert_eq!(content(&r), b"6789");
        r.push(b"a");
        assert_eq!(content(&r), b"789a");
    }

    #[test]
    fn matches_a_naive_model() {
        let mut r = Ring::new(7);
        let mut model: Vec<u8> = Vec::new();
        let mut next = 0u8;
        for size in [1usize, 3, 6, 7, 2, 9, 0, 5, 4, 13, 1] {
            let chunk: Vec<u8> = (0..size)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            r.push(&chunk);
            model.extend_from_slice(&chunk);
            let keep = model.len().saturating_sub(7);
            assert_eq!(content(&r), model[keep..], "after a push of {size}");
        }
    }
}
