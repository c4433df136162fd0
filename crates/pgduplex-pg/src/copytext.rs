//! PostgreSQL's COPY text format, for the few rows pgduplex writes itself (keys).
//! Row data between the sides never passes through here: it is streamed from
//! `COPY ... TO STDOUT` to `COPY ... FROM STDIN` untouched.

/// Appends one value in COPY text form: backslash, tab, newline and carriage
/// return escaped; `None` is `\N`.
pub fn push_value(buf: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        buf.extend_from_slice(b"\\N");
        return;
    };
    for b in value.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

/// Appends one row of non-NULL values, tab separated, newline terminated.
pub fn push_row<S: AsRef<str>>(buf: &mut Vec<u8>, values: &[S]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            buf.push(b'\t');
        }
        push_value(buf, Some(v.as_ref()));
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_copy_text_needs() {
        let mut buf = Vec::new();
        push_row(&mut buf, &["a\tb", "c\\d\ne\rf", "N", "é"]);
        push_value(&mut buf, None);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "a\\tb\tc\\\\d\\ne\\rf\tN\té\n\\N"
        );
    }
}
