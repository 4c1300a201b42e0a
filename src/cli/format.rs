//! Output helpers: aligned tables and Docker-style `--format` templates.

use serde::Serialize;

/// Print rows as a table with columns separated by at least three spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
    out
}

/// Render a Go-template-like format (`{{.Field}}`, `{{json .}}`, `\t`) for one value.
pub fn template<T: Serialize>(fmt: &str, v: &T) -> String {
    let json = serde_json::to_value(v).unwrap_or_default();
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let expr = rest[start + 2..start + end].trim();
        out.push_str(&eval(expr, &json));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out.replace("\\t", "\t").replace("\\n", "\n")
}

fn eval(expr: &str, v: &serde_json::Value) -> String {
    if expr == "json ." || expr == "json" {
        return v.to_string();
    }
    let (json, path) = match expr.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, expr),
    };
    let mut cur = v;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        match cur.get(part) {
            Some(x) => cur = x,
            None => return "<no value>".into(),
        }
    }
    if json {
        return cur.to_string();
    }
    match cur {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

/// `--format` modes shared by ps, images, …
pub enum Format {
    Table,
    Json,
    Template(String),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s {
            None | Some("table") | Some("") => Format::Table,
            Some("json") | Some("{{json .}}") => Format::Json,
            Some(t) => Format::Template(t.to_string()),
        }
    }
}

/// "3 days ago" for an RFC 3339 time, Docker's way; "N/A" if it does not parse.
pub fn ago(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            format!(
                "{} ago",
                crate::engine::human_duration((now - t.with_timezone(&chrono::Utc)).num_seconds())
            )
        })
        .unwrap_or_else(|_| "N/A".into())
}

/// Print `rows` as `--format` asks: one JSON object per line, a template per row,
/// or a table with `header` whose cells `cells` gives.
pub fn print_rows<T: Serialize>(
    format: Option<&str>,
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) {
    match Format::parse(format) {
        Format::Json => rows
            .iter()
            .for_each(|r| println!("{}", serde_json::to_string(r).unwrap_or_default())),
        Format::Template(t) => rows.iter().for_each(|r| println!("{}", template(&t, r))),
        Format::Table => {
            let data: Vec<Vec<String>> = rows.iter().map(cells).collect();
            print!("{}", table(header, &data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Row {
        #[serde(rename = "ID")]
        id: String,
        names: String,
        state: Inner,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Inner {
        running: bool,
    }

    #[test]
    fn templates() {
        let r = Row {
            id: "abc".into(),
            names: "web".into(),
            state: Inner { running: true },
        };
        assert_eq!(template("{{.ID}}\\t{{.Names}}", &r), "abc\tweb");
        assert_eq!(template("{{.State.Running}}", &r), "true");
        assert_eq!(template("{{.Nope}}", &r), "<no value>");
        assert!(template("{{json .}}", &r).starts_with('{'));
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xxxxx".into(), "y".into()]]);
        assert_eq!(t, "A       LONGER\nxxxxx   y\n");
    }
}
