//! Random files in the language, from a seed: what the fuzz tests mutate
//! and the formatter's property tests format.

/// A small deterministic generator (xorshift), so a failing seed reproduces.
pub struct Gen(pub u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    /// What may stand between two tokens; `None` of it only where the
    /// tokens do not run together.
    fn trivia(&mut self, may_be_empty: bool) -> &'static str {
        let t = self.pick(&[
            " ",
            "",
            "\n",
            "\t",
            "  \n  ",
            "# a comment\n",
            "// a comment\n",
            "/* block */",
            "/* two\nlines */",
            "\r\n",
            "\u{FEFF}",
            " /**/ ",
            "\n\n# c\n\n",
        ]);
        if t.is_empty() && !may_be_empty {
            " "
        } else {
            t
        }
    }
}

/// A random file in the language: every item kind, every expression form,
/// strings with escapes and interpolations, heredocs, and trivia between
/// the tokens.
pub fn valid_file(seed: u64) -> String {
    let mut g = Gen(seed | 1);
    let mut out = String::new();
    out.push_str(g.trivia(true));
    for _ in 0..1 + g.below(6) {
        let t = |g: &mut Gen| g.trivia(false);
        let item = match g.below(9) {
            0 => format!(
                "resource{}r{}{}\"t.step\"{}{}",
                t(&mut g),
                g.below(9),
                g.trivia(true),
                g.trivia(true),
                body(&mut g, 0)
            ),
            1 => {
                let mut v = format!("var{}v{}", t(&mut g), g.below(9));
                if g.below(2) == 0 {
                    v += &format!("{}:{}string", g.trivia(true), g.trivia(true));
                }
                if g.below(2) == 0 {
                    v += &format!("{}={}{}", g.trivia(true), g.trivia(true), expr(&mut g, 0));
                }
                v + &sensitive(&mut g)
            }
            2 => {
                let (name, n) = (t(&mut g), g.below(9));
                let o = format!(
                    "output{name}o{n}{}={}{}",
                    g.trivia(true),
                    g.trivia(true),
                    expr(&mut g, 0)
                );
                o + &sensitive(&mut g)
            }
            3 => format!("plugin{}p{}{}", t(&mut g), g.trivia(true), body(&mut g, 0)),
            4 => format!(
                "environment{}e{}{}",
                t(&mut g),
                g.trivia(true),
                body(&mut g, 0)
            ),
            5 => format!(
                "credentials{}c{}{}",
                t(&mut g),
                g.trivia(true),
                body(&mut g, 0)
            ),
            6 => format!("flow{}{}", g.trivia(true), body(&mut g, 0)),
            7 => format!(
                "service{}{}{}{}",
                g.trivia(true),
                string(&mut g, 0),
                g.trivia(true),
                body(&mut g, 0)
            ),
            _ => format!("pipeline{}{}", g.trivia(true), string(&mut g, 0)),
        };
        out.push_str(&item);
        // An item ends where the next keyword starts only after trivia.
        out.push_str(g.trivia(false));
    }
    out
}

/// The optional `sensitive` that ends a var or an output, after trivia that
/// is never empty, so that it does not run into a value ending in a name.
fn sensitive(g: &mut Gen) -> String {
    if g.below(3) == 0 {
        format!("{}sensitive", g.trivia(false))
    } else {
        String::new()
    }
}

fn body(g: &mut Gen, depth: usize) -> String {
    let mut out = String::from("{");
    out.push_str(g.trivia(true));
    for _ in 0..g.below(4) {
        let key = g.pick(&[
            "a",
            "b_2",
            "c-d",
            "nullable",
            "true_x",
            "resource",
            "sensitive",
        ]);
        if depth < 2 && g.below(4) == 0 {
            out.push_str(key);
            for _ in 0..g.below(3) {
                out.push_str(g.trivia(false));
                out.push_str(if g.below(2) == 0 {
                    "label"
                } else {
                    "\"label\""
                });
            }
            out.push_str(g.trivia(true));
            out.push_str(&body(g, depth + 1));
        } else {
            let value = expr(g, depth);
            out.push_str(&format!(
                "{key}{}={}{value}",
                g.trivia(true),
                g.trivia(true)
            ));
        }
        out.push_str(g.trivia(false));
    }
    out.push('}');
    out
}

fn expr(g: &mut Gen, depth: usize) -> String {
    let leaf = depth >= 3;
    let mut out = match g.below(if leaf { 5 } else { 9 }) {
        0 => string(g, depth),
        1 => g
            .pick(&["null", "true", "false", "nullx", "true-ish"])
            .to_string(),
        2 => g
            .pick(&["7", "-3", "0.5", "1e5", "2E-3", "12.25e+2", "0", "-0.0"])
            .to_string(),
        3 | 4 => g
            .pick(&[
                "vpc",
                "var.size",
                "env.name",
                "a_b",
                "x-y",
                "sensitive",
                "sensitive.id",
            ])
            .to_string(),
        5 => {
            let items: Vec<String> = (0..g.below(4)).map(|_| expr(g, depth + 1)).collect();
            let comma = if !items.is_empty() && g.below(2) == 0 {
                ","
            } else {
                ""
            };
            format!(
                "[{}{}{comma}{}]",
                g.trivia(true),
                items.join(&format!(",{}", g.trivia(true))),
                g.trivia(true)
            )
        }
        6 => {
            let mut m = String::from("{");
            for i in 0..g.below(4) {
                let key = if g.below(2) == 0 {
                    format!("k{i}")
                } else {
                    format!("\"k {i}\"")
                };
                let sep = if g.below(2) == 0 { "=" } else { ":" };
                let comma = if g.below(2) == 0 { "," } else { "" };
                m += &format!(
                    "{}{key}{}{sep}{}{}{comma}",
                    g.trivia(true),
                    g.trivia(true),
                    g.trivia(true),
                    expr(g, depth + 1)
                );
                m += g.trivia(false);
            }
            m + "}"
        }
        7 => {
            let args: Vec<String> = (0..g.below(4)).map(|_| expr(g, depth + 1)).collect();
            let name = g.pick(&["join", "length", "cidrsubnet"]);
            format!(
                "{name}{}({}{}{})",
                g.trivia(true),
                g.trivia(true),
                args.join(","),
                g.trivia(true)
            )
        }
        _ => heredoc(g, depth),
    };
    // Accessors, also after literals (`"a".b` parses; the checks reject it).
    for _ in 0..g.below(3) {
        out.push_str(g.trivia(true));
        if g.below(2) == 0 {
            out.push('.');
            out.push_str(g.trivia(true));
            out.push_str(g.pick(&["id", "arn", "x-y"]));
        } else {
            out.push_str(&format!(
                "[{}{}]",
                g.trivia(true),
                if leaf {
                    "0".to_string()
                } else {
                    expr(g, depth + 1)
                }
            ));
        }
    }
    out
}

fn string(g: &mut Gen, depth: usize) -> String {
    let mut out = String::from("\"");
    for _ in 0..g.below(5) {
        match g.below(4) {
            0 => out.push_str(g.pick(&[
                "text",
                " spaced ",
                "é🦀",
                "$x",
                "$$y",
                "a$b",
                "\t",
                "{}",
                "#not//a comment",
            ])),
            1 => out.push_str(g.pick(&[
                "\\n",
                "\\\"",
                "\\\\",
                "\\u{1F980}",
                "\\u{}",
                "\\q",
                "\\é",
                "\\$",
            ])),
            2 => out.push_str("$${"),
            _ if depth < 3 => out.push_str(&format!(
                "${{{}{}{}}}",
                g.trivia(true),
                expr(g, depth + 1),
                g.trivia(true)
            )),
            _ => out.push_str("x"),
        }
    }
    out.push('"');
    out
}

fn heredoc(g: &mut Gen, depth: usize) -> String {
    let tag = g.pick(&["EOT", "END", "x"]);
    let mut out = format!(
        "<<{}{tag}{}\n",
        if g.below(2) == 0 { "-" } else { "" },
        g.pick(&["", " ", "\t "])
    );
    for _ in 0..g.below(4) {
        out.push_str(g.pick(&["", "  ", "\t"]));
        for _ in 0..g.below(3) {
            match g.below(4) {
                0 => out.push_str(g.pick(&["line", " text ", "$x", "{", "é", "EOTX", "END2"])),
                1 => out.push_str("$${"),
                2 if depth < 3 => {
                    out.push_str(&format!("${{{}{}}}", g.trivia(true), expr(g, depth + 1)))
                }
                _ => out.push_str("more"),
            }
        }
        out.push_str(g.pick(&["\n", "\r\n"]));
    }
    out.push_str(g.pick(&["", "  ", "\t"]));
    out.push_str(tag);
    out.push_str(g.pick(&["\n", " \n", "\r\n"]));
    out
}

/// A random file that compiles: vars, a plugin, environments, resources
/// wired to one another through every expression form, heredocs and
/// outputs, with trivia of every kind between the tokens.
pub fn compilable_file(seed: u64) -> String {
    let mut g = Gen(seed | 1);
    let mut out = String::new();
    let mut line = |g: &mut Gen, parts: &[&str]| {
        for p in parts {
            out.push_str(p);
            out.push_str(g.trivia(false));
        }
    };
    line(&mut g, &["pipeline", "\"gen\""]);
    line(&mut g, &["var", "size", ":", "number", "=", "3"]);
    line(&mut g, &["var", "label", "=", "\"x\"", "sensitive"]);
    line(
        &mut g,
        &[
            "var", "zones", ":", "list", "=", "[", "\"a\"", ",", "\"b\"", "]",
        ],
    );
    line(
        &mut g,
        &[
            "plugin",
            "t",
            "{",
            "kind",
            "=",
            "\"provisioner\"",
            "source",
            "=",
            "\"builtin:local\"",
            "}",
        ],
    );
    line(&mut g, &["environment", "dev", "{", "}"]);
    line(
        &mut g,
        &[
            "environment",
            "prod",
            "{",
            "after",
            "=",
            "dev",
            "vars",
            "{",
            "size",
            "=",
            "4",
            "}",
            "}",
        ],
    );
    let resources = 1 + g.below(5);
    for r in 0..resources {
        let name = format!("r{r}");
        line(&mut g, &["resource", &name, "\"t.step\"", "{"]);
        for a in 0..1 + g.below(4) {
            let value = compilable_value(&mut g, r, 0);
            line(&mut g, &[&format!("a{a}"), "=", &value]);
        }
        if r > 0 && g.below(2) == 0 {
            let dependency = format!("r{}", g.below(r));
            line(&mut g, &["depends_on", "=", "[", &dependency, "]"]);
        }
        line(&mut g, &["}"]);
    }
    line(&mut g, &["output", "first", "=", "r0.id"]);
    out
}

/// A value for an attribute of resource `r`: it may use the vars, the
/// environment, and the outputs of the resources before it.
fn compilable_value(g: &mut Gen, r: usize, depth: usize) -> String {
    let reference = |g: &mut Gen| {
        if r > 0 && g.below(2) == 0 {
            format!("r{}.id", g.below(r))
        } else {
            g.pick(&[
                "var.size",
                "var.label",
                "env.name",
                "var.zones[0]",
                "pipeline.name",
            ])
            .to_string()
        }
    };
    let t = |g: &mut Gen| g.trivia(true).to_string();
    match g.below(if depth >= 2 { 4 } else { 7 }) {
        0 => g
            .pick(&[
                "1",
                "-2.5",
                "true",
                "null",
                "\"plain\"",
                "\"tab\\t\\u{1F980}\"",
            ])
            .to_string(),
        1 => reference(g),
        2 => format!(
            "\"{}-${{{}{}{}}}-$${{not}}\"",
            g.pick(&["pre", "", "a b"]),
            t(g),
            reference(g),
            t(g)
        ),
        3 => {
            let marker = g.pick(&["EOT", "END"]);
            let strip = if g.below(2) == 0 { "-" } else { "" };
            format!(
                "<<{strip}{marker}\n    line ${{{}}}\n  {}\n  {marker}\n",
                reference(g),
                g.pick(&["", "  spaced  ", "$${x}"])
            )
        }
        4 => {
            let items: Vec<String> = (0..g.below(4))
                .map(|_| compilable_value(g, r, depth + 1))
                .collect();
            format!(
                "[{}{}{}]",
                t(g),
                items.join(&format!("{},{}", t(g), t(g))),
                t(g)
            )
        }
        5 => {
            let entries: Vec<String> = (0..g.below(4))
                .map(|i| format!("k{i}{}={}{}", t(g), t(g), compilable_value(g, r, depth + 1)))
                .collect();
            format!(
                "{{{}{}{}}}",
                t(g),
                entries.join(&format!("{},{}", t(g), t(g))),
                t(g)
            )
        }
        _ => format!(
            "join({}\",\"{},{}[{}{}{}]{})",
            t(g),
            t(g),
            t(g),
            t(g),
            reference(g),
            t(g),
            t(g)
        ),
    }
}
