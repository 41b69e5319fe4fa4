//! HTML building blocks for the console's pages: the one escaping helper every piece of user data goes
//! through, the page shell (navigation, stylesheet, script), and the decoding of query strings and form
//! bodies (`application/x-www-form-urlencoded`).
//!
//! Pages are `String`s built with `format!`: every value that did not come from this source file (topic
//! names, group ids, keys, values, headers, configs, error messages that quote them) is passed through
//! [`escape`] where it is written. Attribute values are always double-quoted, so escaping `"` is enough
//! for them too.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most fields a form or query string may have; anything beyond is ignored.
const FIELDS_MAX: usize = 64;

/// Escapes `text` for HTML text and double- or single-quoted attribute values.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Percent-encodes `text` for a URL path segment or query value.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The fields of a query string or form body: later repeats of a name are ignored, as are fields past
/// [`FIELDS_MAX`] and fields that are not UTF-8 once decoded.
pub fn fields(encoded: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for pair in encoded.split('&').filter(|p| !p.is_empty()).take(FIELDS_MAX) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(name), Some(value)) = (decode(name), decode(value)) {
            fields.entry(name).or_insert(value);
        }
    }
    fields
}

/// `+` is a space and `%XX` a byte; `None` if the bytes are not UTF-8 or an escape is malformed.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Topics,
    Groups,
}

/// A whole page: `title` (escaped here) and `body` (already HTML).
pub fn page(section: Section, title: &str, body: &str) -> String {
    let link = |s: Section, href: &str, label: &str| {
        let current = if s == section { " class=\"current\"" } else { "" };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Strata</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><header><span class=\"brand\">Strata</span><nav>{}{}{}</nav></header>\
         <main><h1>{title}</h1>\n{body}</main></body></html>\n",
        link(Section::Overview, "/", "Overview"),
        link(Section::Topics, "/topics", "Topics"),
        link(Section::Groups, "/groups", "Consumer groups"),
        title = escape(title),
    )
}

/// A table with a header row; cells are HTML already.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    let mut any = false;
    for row in rows {
        any = true;
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if !any {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"empty\">none</td></tr>",
            headers.len()
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// A hidden field carrying the CSRF token, for every form that POSTs.
pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(token))
}

/// A message box: `kind` is `error` or `notice`; `text` is escaped here.
pub fn message(kind: &str, text: &str) -> String {
    format!("<p class=\"{kind}\">{}</p>", escape(text))
}

/// Bytes as people read sizes: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_makes_markup_inert() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert!(matches!(escape("orders-1"), Cow::Borrowed(_)));
        assert_eq!(escape(""), "");
        assert_eq!(escape("é<"), "é&lt;");
    }

    #[test]
    fn forms_decode_and_bound() {
        let f = fields("name=a+b%21&x=%3Cs%3E&name=second&bad=%zz&utf=%C3%A9&empty");
        assert_eq!(f["name"], "a b!");
        assert_eq!(f["x"], "<s>");
        assert_eq!(f["utf"], "é");
        assert_eq!(f["empty"], "");
        assert!(!f.contains_key("bad"));
        assert!(fields("%FF=1").is_empty(), "not UTF-8");
        assert!(fields("a=%4").is_empty(), "a truncated escape");
        let many: Vec<String> = (0..1000).map(|i| format!("f{i}=1")).collect();
        assert_eq!(fields(&many.join("&")).len(), FIELDS_MAX);
    }

    #[test]
    fn urls_encode_everything_but_unreserved() {
        assert_eq!(url("a b/<c>?&=é"), "a%20b%2F%3Cc%3E%3F%26%3D%C3%A9");
        assert_eq!(url("orders.v1_x-y~"), "orders.v1_x-y~");
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
