//! Byte offsets in a file and the positions people and editors use: lines
//! and columns, counted in characters (for `check --format json`) or in
//! UTF-16 code units (for the language server's protocol).

/// The start of every line of one text.
#[derive(Debug, Clone)]
pub struct LineMap {
    starts: Vec<usize>,
}

/// A position: 0-based line, and 0-based column in the unit asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineColumn {
    pub line: usize,
    pub column: usize,
}

impl LineMap {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineMap { starts }
    }

    /// The line `offset` is on, 0-based.
    pub fn line(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// Where `offset` is, its column in characters.
    pub fn chars(&self, text: &str, offset: usize) -> LineColumn {
        let (line, before) = self.before(text, offset);
        LineColumn {
            line,
            column: before.chars().count(),
        }
    }

    /// Where `offset` is, its column in UTF-16 code units.
    pub fn utf16(&self, text: &str, offset: usize) -> LineColumn {
        let (line, before) = self.before(text, offset);
        LineColumn {
            line,
            column: before.encode_utf16().count(),
        }
    }

    /// The byte offset of a line and UTF-16 column; past the end of its
    /// line (or of the text) is the end of it.
    pub fn offset_of_utf16(&self, text: &str, at: LineColumn) -> usize {
        let Some(&start) = self.starts.get(at.line) else {
            return text.len();
        };
        let end = self
            .starts
            .get(at.line + 1)
            .map_or(text.len(), |&next| next - 1);
        let mut units = 0;
        for (i, c) in text[start..end].char_indices() {
            if units >= at.column {
                return start + i;
            }
            units += c.len_utf16();
        }
        end
    }

    fn before<'t>(&self, text: &'t str, offset: usize) -> (usize, &'t str) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line(offset);
        (line, &text[self.starts[line]..offset])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_in_characters_and_in_utf16() {
        let text = "ab\né🦀x\n";
        let map = LineMap::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(map.chars(text, x), LineColumn { line: 1, column: 2 });
        assert_eq!(map.utf16(text, x), LineColumn { line: 1, column: 3 });
        assert_eq!(
            map.offset_of_utf16(text, LineColumn { line: 1, column: 3 }),
            x
        );
        assert_eq!(
            map.offset_of_utf16(
                text,
                LineColumn {
                    line: 1,
                    column: 99
                }
            ),
            x + 1
        );
        assert_eq!(
            map.offset_of_utf16(text, LineColumn { line: 9, column: 0 }),
            text.len()
        );
        assert_eq!(map.line(text.len()), 2);
    }
}
