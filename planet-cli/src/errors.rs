//! Error chains on one line, for logs and self-metrics.

/// `err` and its causes on one line: "a: b: c".
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot load")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_each_cause_once() {
        let err = Outer(std::io::Error::other("disk gone"));
        assert_eq!(super::chain(&err), "cannot load: disk gone");
    }
}
