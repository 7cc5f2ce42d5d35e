//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) between the two forms
//! of the cached `/metrics` page: gzip and identity.

/// Whether a request carrying these `Accept-Encoding` values gets gzip.
///
/// gzip's weight is that of `gzip` (or `x-gzip`), else of `*`, else 0;
/// identity's is that of `identity`, else of `*`, else none given. gzip
/// wins when its weight is above 0 and not below identity's: a request
/// that accepts gzip at all gets it unless it ranks identity higher. An
/// element with a malformed `q` is ignored; when every coding is refused
/// the page goes out uncompressed (identity is the fallback RFC 9110
/// allows).
pub fn prefers_gzip<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for element in values.into_iter().flat_map(|v| v.split(',')) {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        if coding.is_empty() {
            continue;
        }
        let Some(q) = weight(parts) else { continue };
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
    }
    let gzip = gzip.or(any).unwrap_or(0);
    let identity = identity.or(any).unwrap_or(0);
    gzip > 0 && gzip >= identity
}

/// The element's weight in thousandths: its `q` parameter, 1000 without
/// one, `None` when `q` is malformed.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            return qvalue(value.trim());
        }
    }
    Some(1000)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&[""], false),
            (&["gzip"], true),
            // What Prometheus sends.
            (&["gzip"], true),
            (&["GZIP"], true),
            (&["x-gzip"], true),
            (&["deflate, gzip;q=1.0, *;q=0.5"], true),
            (&["br", "gzip"], true),
            (&["br"], false),
            (&["deflate, br"], false),
            (&["gzip;q=0"], false),
            (&["gzip; q=0.000"], false),
            (&["gzip;q=0.001"], true),
            (&["gzip ; Q=0.5"], true),
            (&["*"], true),
            (&["*;q=0"], false),
            (&["*;q=0, identity"], false),
            (&["*, gzip;q=0"], false),
            (&["gzip;q=0.5, identity;q=0.8"], false),
            (&["gzip;q=0.8, identity;q=0.8"], true),
            (&["identity;q=0, gzip;q=0.1"], true),
            (&["identity"], false),
            (&["gzip;q=0, x-gzip;q=0.5"], true),
            // Malformed weights: the element is ignored.
            (&["gzip;q=2"], false),
            (&["gzip;q=1.5"], false),
            (&["gzip;q=0.5000"], false),
            (&["gzip;q=abc"], false),
            (&["gzip;q="], false),
            (&["gzip;q=nan"], false),
            (&["gzip;q=-1"], false),
            (&["gzip;q=bad, *"], true),
            (&[" , ,gzip"], true),
            (&["gzip;foo=bar"], true),
            (&["gzip;foo"], true),
        ];
        for (values, want) in cases {
            assert_eq!(prefers_gzip(values.iter().copied()), *want, "{values:?}");
        }
    }

    #[test]
    fn qvalues() {
        for (text, want) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.25", Some(250)),
            ("0.125", Some(125)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.1234", None),
            ("", None),
            ("1e0", None),
            (".5", None),
        ] {
            assert_eq!(qvalue(text), want, "{text:?}");
        }
    }
}
