//! A small, dependency-free PDF 1.4 writer for the written controls: A4 pages, the standard
//! Helvetica fonts (WinAnsi), headings, wrapped paragraphs, fields, lists and simple tables.
//! Characters outside WinAnsi print as `?`; the Markdown and HTML forms keep them.

use crate::reports::{Block, Report};

const W: f32 = 595.0;
const H: f32 = 842.0;
const MARGIN: f32 = 50.0;

struct Writer {
    pages: Vec<String>,
    cur: String,
    y: f32,
}

/// WinAnsi bytes of `s`, escaped for a PDF string literal.
fn pdf_text(s: &str) -> String {
    let s = s.replace('→', "->").replace('…', "...");
    let mut out = String::new();
    for c in s.chars() {
        let b: u8 = match c {
            '\u{20}'..='\u{7e}' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '\t' => b' ',
            _ => b'?',
        };
        match b {
            b'(' | b')' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// Greedy wrap by an average glyph width (Helvetica is about half an em).
fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let max = ((width / (size * 0.52)).floor() as usize).max(10);
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let mut word = word.to_string();
            while word.chars().count() > max {
                let head: String = word.chars().take(max).collect();
                word = word.chars().skip(max).collect();
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(head);
            }
            if line.chars().count() + word.chars().count() + usize::from(!line.is_empty()) > max {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

impl Writer {
    fn new() -> Self {
        Self {
            pages: Vec::new(),
            cur: String::new(),
            y: H - MARGIN,
        }
    }

    fn ensure(&mut self, h: f32) {
        if self.y - h < MARGIN {
            self.pages.push(std::mem::take(&mut self.cur));
            self.y = H - MARGIN;
        }
    }

    fn line(&mut self, text: &str, font: &str, size: f32, indent: f32) {
        self.ensure(size * 1.35);
        self.y -= size * 1.35;
        self.cur.push_str(&format!(
            "BT /{font} {size} Tf {:.1} {:.1} Td ({}) Tj ET\n",
            MARGIN + indent,
            self.y,
            pdf_text(text)
        ));
    }

    fn wrapped(&mut self, text: &str, font: &str, size: f32, indent: f32) {
        for l in wrap(text, size, W - 2.0 * MARGIN - indent) {
            self.line(&l, font, size, indent);
        }
    }

    fn gap(&mut self, h: f32) {
        self.y -= h;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.cur.is_empty() || self.pages.is_empty() {
            self.pages.push(self.cur);
        }
        self.pages
    }
}

/// Renders a report as a PDF document.
pub fn render(r: &Report) -> Vec<u8> {
    let mut w = Writer::new();
    w.line(&r.ticket_number, "F2", 11.0, 0.0);
    w.wrapped(&r.title, "F2", 18.0, 0.0);
    w.gap(8.0);
    for b in &r.blocks {
        match b {
            Block::Heading(l, t) => {
                w.gap(6.0);
                let size = match l {
                    0..=2 => 14.0,
                    3 => 12.0,
                    _ => 11.0,
                };
                w.wrapped(t, "F2", size, 0.0);
            }
            Block::Para(t) => {
                w.wrapped(t, "F1", 10.0, 0.0);
                w.gap(4.0);
            }
            Block::Fields(f) => {
                for (k, v) in f {
                    w.wrapped(&format!("{k}: {v}"), "F1", 10.0, 0.0);
                }
                w.gap(4.0);
            }
            Block::List(items) => {
                for i in items {
                    w.wrapped(&format!("• {i}"), "F1", 10.0, 8.0);
                }
                w.gap(4.0);
            }
            Block::Table(h, rows) => {
                w.wrapped(&h.join("  |  "), "F2", 9.0, 0.0);
                for row in rows {
                    w.wrapped(&row.join("  |  "), "F1", 9.0, 0.0);
                }
                w.gap(4.0);
            }
        }
    }
    let pages = w.finish();
    // objects: 1 catalog, 2 pages, 3 F1, 4 F2, 5 info, then a (page, contents) pair per page
    let mut objs: Vec<String> = Vec::new();
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 6 + 2 * i))
        .collect();
    objs.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objs.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objs.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    objs.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .into(),
    );
    objs.push(format!(
        "<< /Title ({} {}) /Producer (Firebreak) >>",
        pdf_text(&r.ticket_number),
        pdf_text(&r.title)
    ));
    for (i, content) in pages.iter().enumerate() {
        let footer = format!(
            "BT /F1 8 Tf {MARGIN:.1} 30.0 Td ({}) Tj ET\n",
            pdf_text(&format!(
                "{} - {} - page {} of {}",
                r.ticket_number,
                r.title,
                i + 1,
                pages.len()
            ))
        );
        objs.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {W} {H}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
            7 + 2 * i
        ));
        let stream = format!("{content}{footer}");
        objs.push(format!(
            "<< /Length {} >>\nstream\n{stream}endstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objs.len());
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_report_is_a_well_formed_multi_page_pdf() {
        let r = Report {
            title: "Meeting Minutes".into(),
            ticket_number: "SEC-000042".into(),
            blocks: (0..200)
                .map(|i| {
                    Block::Para(format!(
                        "Paragraph {i} with (parentheses), a backslash \\ and é — €."
                    ))
                })
                .collect(),
        };
        let pdf = render(&r);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.trim_end().ends_with("%%EOF"));
        assert!(text.contains("/Count "));
        let count: usize = text
            .split("/Count ")
            .nth(1)
            .unwrap_or("0")
            .split(' ')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        assert!(count >= 2, "{count} pages");
        assert!(text.contains("\\(parentheses\\)"));
        // every xref offset points at its object
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let table = &pdf[xref_at..];
        let table = String::from_utf8_lossy(table);
        for (i, line) in table.lines().skip(3).take(5).enumerate() {
            let off: usize = line[..10].parse().unwrap_or(0);
            assert!(
                pdf[off..].starts_with(format!("{} 0 obj", i + 1).as_bytes()),
                "object {}",
                i + 1
            );
        }
    }

    #[test]
    fn wrapping_respects_the_width() {
        let lines = wrap(&"word ".repeat(100), 10.0, 200.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
    }
}
