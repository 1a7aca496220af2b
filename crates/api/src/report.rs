//! An error for people: the error and its sources on one line, as statuses, events and
//! the CLI's messages show it (no source lost, none repeated).

/// `e: source: source's source`; a source whose text the message already carries (some
/// errors repeat their cause) is not written twice.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("read the VMI")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn sources_once_each() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        assert_eq!(chain(&e), "read the VMI: no such file");
    }
}
