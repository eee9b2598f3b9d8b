//! URL templates with `{ra}` and `{dec}` placeholders.

use super::py_repr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template must contain {{ra}} and {{dec}}: {0}")]
    MissingPlaceholder(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Ra,
    Dec,
}

/// A parsed template; rendering is a few string pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if !source.contains("{ra}") || !source.contains("{dec}") {
            return Err(TemplateError::MissingPlaceholder(source.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let next = [("{ra}", Part::Ra), ("{dec}", Part::Dec)]
                .into_iter()
                .filter_map(|(pat, part)| rest.find(pat).map(|i| (i, pat.len(), part)))
                .min_by_key(|(i, _, _)| *i);
            match next {
                Some((i, len, part)) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_string()));
                    }
                    parts.push(part);
                    rest = &rest[i + len..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(Self {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, ra: f64, dec: f64) -> String {
        let (ra, dec) = (py_repr(ra), py_repr(dec));
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Ra => out.push_str(&ra),
                Part::Dec => out.push_str(&dec),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let t = Template::parse("a{ra}b{dec}c{ra}").expect("valid");
        assert_eq!(t.render(1.5, -0.0), "a1.5b-0.0c1.5");
    }

    #[test]
    fn refuses_templates_without_placeholders() {
        assert!(Template::parse("http://x?ra={ra}").is_err());
        assert!(Template::parse("http://x?dec={dec}").is_err());
    }
}
