//! How `consume` prints a record: a template or JSON, one record per line; and the tables of `group` and
//! `cluster`.
//!
//! A template is parsed once into pieces, then each record is written piece by piece as raw bytes, so
//! binary keys and values come out unchanged. Placeholders: `%k` key, `%v` value, `%o` offset,
//! `%p` partition, `%t` timestamp (ms), `%h` headers as `k=v,k2=v2` (the form `produce --headers` takes),
//! `%%` a percent sign; escapes `\n`, `\t`, `\\`. A null key or value prints as nothing.
//!
//! `json` prints `{"partition":0,"offset":5,"timestamp":…,"key":"k","value":"v","headers":{"h":"1"}}`,
//! with keys, values and headers as strings (invalid UTF-8 replaced) or `null`.

use std::io::{self, Write};

use strata_protocol::client::Record;

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Vec<u8>),
    Key,
    Value,
    Offset,
    Partition,
    Timestamp,
    Headers,
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Template(Vec<Piece>),
    Json,
}

impl Format {
    /// Parses `json` or a template, refusing unknown placeholders and escapes.
    pub fn parse(text: &str) -> Result<Format, String> {
        if text == "json" {
            return Ok(Format::Json);
        }
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('o') => Piece::Offset,
                    Some('p') => Piece::Partition,
                    Some('t') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    other => return Err(unknown("placeholder", '%', other)),
                },
                '\\' => {
                    literal.push(match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('\\') => b'\\',
                        other => return Err(unknown("escape", '\\', other)),
                    });
                    continue;
                }
                c => {
                    literal.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Format::Template(pieces))
    }

    /// Writes one record and a newline.
    pub fn write(&self, out: &mut impl Write, partition: i32, record: &Record) -> io::Result<()> {
        match self {
            Format::Template(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Literal(bytes) => out.write_all(bytes)?,
                        Piece::Key => out.write_all(record.key.as_deref().unwrap_or_default())?,
                        Piece::Value => out.write_all(record.value.as_deref().unwrap_or_default())?,
                        Piece::Offset => write!(out, "{}", record.offset)?,
                        Piece::Partition => write!(out, "{partition}")?,
                        Piece::Timestamp => write!(out, "{}", record.timestamp)?,
                        Piece::Headers => write_headers(out, record)?,
                    }
                }
            }
            Format::Json => write_json(out, partition, record)?,
        }
        out.write_all(b"\n")
    }
}

fn unknown(what: &str, lead: char, next: Option<char>) -> String {
    match next {
        Some(c) => format!("unknown {what} `{lead}{c}` in --format"),
        None => format!("--format ends in a lone `{lead}`"),
    }
}

fn write_headers(out: &mut impl Write, record: &Record) -> io::Result<()> {
    for (i, (name, value)) in record.headers.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(name.as_bytes())?;
        out.write_all(b"=")?;
        out.write_all(value.as_deref().unwrap_or_default())?;
    }
    Ok(())
}

fn write_json(out: &mut impl Write, partition: i32, record: &Record) -> io::Result<()> {
    write!(
        out,
        r#"{{"partition":{partition},"offset":{},"timestamp":{},"key":"#,
        record.offset, record.timestamp
    )?;
    json_bytes(out, record.key.as_deref())?;
    out.write_all(br#","value":"#)?;
    json_bytes(out, record.value.as_deref())?;
    out.write_all(br#","headers":{"#)?;
    for (i, (name, value)) in record.headers.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        json_bytes(out, Some(name.as_bytes()))?;
        out.write_all(b":")?;
        json_bytes(out, value.as_deref())?;
    }
    out.write_all(b"}}")
}

/// A JSON string (or `null`) holding `bytes` read as UTF-8, invalid sequences replaced.
fn json_bytes(out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
    let Some(bytes) = bytes else {
        return out.write_all(b"null");
    };
    out.write_all(b"\"")?;
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            '\n' => out.write_all(b"\\n")?,
            '\r' => out.write_all(b"\\r")?,
            '\t' => out.write_all(b"\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_all(c.encode_utf8(&mut [0; 4]).as_bytes())?,
        }
    }
    out.write_all(b"\"")
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text
    };
    println!("{}", line(header.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;
    use strata_protocol::client::records::decode_batches;
    use strata_protocol::client::{BatchBuilder, Compression, Headers};

    use super::*;

    fn record(key: Option<&'static str>, value: &'static str, headers: &[(&'static str, &'static str)]) -> Record {
        let mut map = Headers::new();
        for (k, v) in headers {
            map.insert(StrBytes::from_static_str(k), Some(Bytes::from_static(v.as_bytes())));
        }
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(
            key.map(|k| Bytes::from_static(k.as_bytes())),
            Some(Bytes::from_static(value.as_bytes())),
            map,
            42,
        );
        let mut records = decode_batches(builder.build().unwrap(), 0).unwrap().records;
        records.pop().unwrap()
    }

    fn render(format: &str, record: &Record) -> String {
        let mut out = Vec::new();
        Format::parse(format).unwrap().write(&mut out, 3, record).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn templates_fill_every_placeholder() {
        let r = record(Some("k1"), "v1", &[("a", "1"), ("b", "2")]);
        assert_eq!(
            render("%p/%o@%t %k=%v [%h] 100%%\\t.", &r),
            "3/0@42 k1=v1 [a=1,b=2] 100%\t.\n"
        );
        assert_eq!(render("%k|%v|%h", &record(None, "", &[])), "||\n");
        assert_eq!(render("", &r), "\n");
        for bad in ["%x", "%", "\\q", "a\\"] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_escapes_and_writes_nulls() {
        let r = record(None, "say \"hi\"\n\u{1}", &[("h", "x\\y")]);
        assert_eq!(
            render("json", &r),
            "{\"partition\":3,\"offset\":0,\"timestamp\":42,\"key\":null,\"value\":\"say \\\"hi\\\"\\n\\u0001\",\"headers\":{\"h\":\"x\\\\y\"}}\n"
        );
    }
}
