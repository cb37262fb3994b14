'use strict';
// Folding by braces, brackets and parentheses, and of block comments and
// heredocs. A language configuration can only fold by indentation or by
// region markers, and a .pipeline block is a `{ }` whatever its indentation.
// Strings, comments and heredocs are skipped so that a brace in them does
// not count. VS Code merges these ranges with the server's, if it sends any.

const HEREDOC = /^<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?$/;

// Lines are 0-based; the closing line of a bracket stays visible.
function foldingRanges(text) {
  const lines = text.split('\n');
  const ranges = [];
  const open = []; // the lines of the brackets not closed yet
  let comment = -1; // the line of an open `/*`
  let heredoc = null; // { marker, start } of an open heredoc
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    if (heredoc) {
      if (line.trim() === heredoc.marker) {
        if (n - 1 > heredoc.start) ranges.push({ start: heredoc.start, end: n - 1 });
        heredoc = null;
      }
      continue;
    }
    let string = false; // strings do not span lines
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      const next = line[i + 1];
      if (comment >= 0) {
        if (c === '*' && next === '/') {
          if (n > comment) ranges.push({ start: comment, end: n, kind: 'comment' });
          comment = -1;
          i++;
        }
      } else if (string) {
        if (c === '\\') i++;
        else if (c === '"') string = false;
      } else if (c === '#' || (c === '/' && next === '/')) {
        break;
      } else if (c === '/' && next === '*') {
        comment = n;
        i++;
      } else if (c === '"') {
        string = true;
      } else if (c === '<' && next === '<') {
        const m = HEREDOC.exec(line.slice(i));
        if (m) {
          heredoc = { marker: m[1], start: n };
          break;
        }
      } else if (c === '{' || c === '[' || c === '(') {
        open.push(n);
      } else if (c === '}' || c === ']' || c === ')') {
        const start = open.pop();
        if (start !== undefined && n - 1 > start) ranges.push({ start, end: n - 1 });
      }
    }
  }
  return ranges;
}

module.exports = { foldingRanges };
