#!/usr/bin/env node
// Tokenizes the examples and some tricky snippets with the TextMate engine
// VS Code itself uses, and checks the scopes that matter. Not part of CI (it
// needs npm packages); run it after changing the grammar:
//
//   cd editors/vscode
//   npm install --no-save vscode-textmate vscode-oniguruma
//   node test/grammar-check.js            # -v: print every token
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const root = path.join(__dirname, '..');
const grammarPath = path.join(root, 'syntaxes', 'pipeline.tmLanguage.json');
const examplesDir = path.join(root, '..', '..', 'examples');
const verbose = process.argv.includes('-v');

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === 'source.pipeline'
        ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath)
        : null,
  });
  return registry.loadGrammar('source.pipeline');
}

// Lines of tokens ({ text, scopes }), and the rule stack's depth after the
// last line (1: every string, heredoc and comment was closed).
function tokenize(grammar, text) {
  let state = vsctm.INITIAL;
  const lines = text.split('\n').map((line) => {
    const r = grammar.tokenizeLine(line, state);
    state = r.ruleStack;
    return r.tokens.map((t) => ({
      text: line.substring(t.startIndex, t.endIndex),
      scopes: t.scopes.filter((s) => s !== 'source.pipeline'),
    }));
  });
  return { lines, depth: state.depth };
}

function show(lines) {
  lines.forEach((toks, i) => {
    console.log(`  ${String(i + 1).padStart(3)}: ` +
      toks.map((t) => `${JSON.stringify(t.text)}=${t.scopes.join(' ') || '-'}`).join('  '));
  });
}

let checks = 0;
const failures = [];

// The token of line `line` (1-based) whose text is `text` (the `nth`, 0-based,
// when there are several) has a scope starting with each of `want`, and none
// starting with any of `not`.
function expect(name, lines, line, text, want, not = [], nth = 0) {
  checks++;
  const toks = (lines[line - 1] || []).filter((t) => t.text === text);
  const tok = toks[nth];
  const has = (p) => tok && tok.scopes.some((s) => s === p || s.startsWith(p + '.'));
  const bad = !tok ? 'no such token' :
    want.filter((w) => !has(w)).map((w) => `missing ${w}`)
      .concat(not.filter(has).map((n) => `unwanted ${n}`)).join(', ');
  if (bad) {
    failures.push(`${name}: line ${line} ${JSON.stringify(text)}: ${bad}` +
      (tok ? ` (scopes: ${tok.scopes.join(' ')})` : ''));
  }
}

function snippet(grammar, name, text, checkFn) {
  const { lines, depth } = tokenize(grammar, text);
  if (verbose) { console.log(`snippet ${name}:`); show(lines); }
  checkFn((...a) => expect(name, lines, ...a));
  checks++;
  if (depth !== 1) failures.push(`${name}: ends inside a region (depth ${depth})`);
}

async function main() {
  const grammar = await loadGrammar();

  // The examples: nothing invalid, every region closed, and the tokens of a
  // few known lines.
  const examples = fs.readdirSync(examplesDir).filter((f) => f.endsWith('.pipeline')).sort();
  for (const f of examples) {
    const { lines, depth } = tokenize(grammar, fs.readFileSync(path.join(examplesDir, f), 'utf8'));
    if (verbose) { console.log(`${f}:`); show(lines); }
    const all = lines.flat();
    const invalid = all.filter((t) => t.scopes.some((s) => s.startsWith('invalid')));
    const kinds = {};
    for (const t of all) {
      for (const s of t.scopes) {
        const k = s.split('.').slice(0, 2).join('.');
        kinds[k] = (kinds[k] || 0) + 1;
      }
    }
    checks += 2;
    if (invalid.length) failures.push(`${f}: invalid tokens: ${invalid.map((t) => t.text).join(' ')}`);
    if (depth !== 1) failures.push(`${f}: ends inside a region (depth ${depth})`);
    // Every `resource NAME "type"` line highlights its keyword and name.
    lines.forEach((toks, i) => {
      const m = /^\s*resource\s+([A-Za-z_][A-Za-z0-9_-]*)\s+"/.exec(toks.map((t) => t.text).join(''));
      if (m) {
        expect(f, lines, i + 1, 'resource', ['keyword.other.declaration']);
        expect(f, lines, i + 1, m[1], ['entity.name.type.resource']);
      }
    });
    console.log(`${f}: ${lines.length} lines, ${all.length} tokens, ${invalid.length} invalid, ` +
      `closed: ${depth === 1}; ` + Object.entries(kinds).sort().map(([k, n]) => `${k} ${n}`).join(', '));
  }

  const local = fs.readFileSync(path.join(examplesDir, 'local-files.pipeline'), 'utf8').split('\n');
  const lineOf = (re) => local.findIndex((l) => re.test(l)) + 1;
  if (local.length > 1) {
    const { lines } = tokenize(grammar, local.join('\n'));
    const e = (...a) => expect('local-files.pipeline', lines, ...a);
    const h = lineOf(/<<-HTML/);
    e(h, '<<', ['keyword.operator.heredoc']);
    e(h + 1, 'var', ['string.unquoted.heredoc', 'meta.embedded.line', 'variable.language']);
    e(h + 3, 'HTML', ['keyword.control.heredoc-token']);
    e(h + 4, 'mode', ['variable.other.property'], ['string']);
    const j = lineOf(/jsonencode/);
    e(j, 'jsonencode', ['entity.name.function']);
    e(j, 'index_sha256', ['variable.other.property']);
    e(j, 'sha256', ['variable.other.member']);
  }

  snippet(grammar, 'indented <<-EOT', [
    'resource f "local.file" {',             // 1
    '  content = <<-EOT',                    // 2
    '    #!/bin/sh',                         // 3
    '    echo "${var.greeting}" \\n $${HOME}', // 4
    '    EOTX',                              // 5
    '      EOT  ',                           // 6
    '  mode = "0644"',                       // 7
    '}',
  ].join('\n'), (e) => {
    e(2, 'content', ['variable.other.property']);
    e(2, '-', ['keyword.operator.heredoc']);
    e(2, 'EOT', ['keyword.control.heredoc-token']);
    e(3, '    #!/bin/sh', ['string.unquoted.heredoc'], ['comment']);
    e(4, 'var', ['string.unquoted.heredoc', 'meta.embedded.line', 'variable.language']);
    e(4, 'greeting', ['variable.other.member']);
    e(4, '$${', ['constant.character.escape.dollar']);
    e(4, '" \\n ', ['string.unquoted.heredoc'], ['constant.character.escape']);
    e(5, '    EOTX', ['string.unquoted.heredoc']);
    e(6, 'EOT', ['keyword.control.heredoc-token']);
    e(7, 'mode', ['variable.other.property'], ['string']);
    e(7, '0644', ['string.quoted.double']);
  });

  snippet(grammar, '<<EOT, then sensitive', [
    'var motd = <<EOT',
    'a "quote" and # not a comment',
    'EOT',
    'sensitive',
    'output x = y',
  ].join('\n'), (e) => {
    e(1, 'motd', ['entity.name.variable.var']);
    e(2, 'a "quote" and # not a comment', ['string.unquoted.heredoc'], ['comment', 'string.quoted']);
    e(3, 'EOT', ['keyword.control.heredoc-token']);
    e(4, 'sensitive', ['storage.modifier.sensitive']);
    e(5, 'output', ['keyword.other.declaration']);
  });

  snippet(grammar, 'interpolations', [
    'name = "${var.x}-${r.out["k"]}" # trailing',
    'tags = { Name = "${ jsonencode({ a = 1 }) }!" }',
  ].join('\n'), (e) => {
    e(1, '"', ['punctuation.definition.string.begin'], [], 0);
    e(1, '${', ['punctuation.section.interpolation.begin'], [], 0);
    e(1, 'var', ['meta.embedded.line', 'variable.language']);
    e(1, 'x', ['variable.other.member']);
    e(1, '-', ['string.quoted.double'], ['meta.embedded']);
    e(1, 'r', ['meta.embedded.line', 'variable.other.readwrite']);
    e(1, 'out', ['variable.other.member']);
    e(1, '[', ['meta.embedded.line', 'punctuation.section.brackets.begin']);
    e(1, 'k', ['meta.embedded.line', 'string.quoted.double']);
    e(1, '}', ['punctuation.section.interpolation.end'], [], 1);
    e(1, '#', ['comment.line.number-sign'], ['string']);
    e(1, ' trailing', ['comment.line.number-sign'], ['string']);
    e(2, 'Name', ['variable.other.property']);
    e(2, 'jsonencode', ['meta.embedded.line', 'entity.name.function']);
    e(2, 'a', ['meta.embedded.line', 'variable.other.property']);
    e(2, '}', ['punctuation.section.braces.end'], ['punctuation.section.interpolation'], 0);
    e(2, ')', ['meta.embedded.line']);
    e(2, '}', ['punctuation.section.interpolation.end'], [], 1);
    e(2, '!', ['string.quoted.double'], ['meta.embedded']);
    e(2, '}', ['punctuation.section.braces.end'], ['string'], 2);
  });

  snippet(grammar, 'escapes', [
    'a = "cost $${x} \\u{1F600} \\" \\q ok"',
  ].join('\n'), (e) => {
    e(1, '$${', ['constant.character.escape.dollar']);
    e(1, 'x} ', ['string.quoted.double'], ['meta.embedded']);
    e(1, '\\u{1F600}', ['constant.character.escape']);
    e(1, '\\"', ['constant.character.escape']);
    e(1, '\\q', ['invalid.illegal.escape']);
    e(1, ' ok', ['string.quoted.double']);
  });

  snippet(grammar, 'comments', [
    'x = 1 /* a block',
    'resource no "a.b" {',
    '*/',
    'var y = "http://host" // a note',
    '# a whole line',
  ].join('\n'), (e) => {
    e(1, '/*', ['comment.block']);
    e(2, 'resource no "a.b" {', ['comment.block']);
    e(3, '*/', ['comment.block']);
    e(4, 'var', ['keyword.other.declaration']);
    e(4, 'http://host', ['string.quoted.double'], ['comment']);
    e(4, '//', ['comment.line.double-slash']);
    e(5, '#', ['comment.line.number-sign']);
  });

  snippet(grammar, 'keywords and names', [
    'pipeline "p"',                                     // 1
    'var db_password: string sensitive',                // 2
    'resource sensitive "aws.vpc" {',                   // 3
    '  sensitive = true',                               // 4
    '  output    = null',                               // 5
    '  flow { refresh = false }',                       // 6
    '  size_gb   = -3.5e2',                             // 7
    '  subnets   = [public_a.id, var.zones[0]]',        // 8
    '  dynamic "x" lbl {',                              // 9
    '}',
    'environment prod {',                               // 11
    '  credentials aws { resolver = aws_keys }',        // 12
    '}',
    'service "api" {}',                                 // 14
    'output conn = "x" sensitive # secret',             // 15
    'name = "unclosed',                                 // 16
    'plugin p {}',                                      // 17
  ].join('\n'), (e) => {
    e(1, 'pipeline', ['keyword.other.declaration']);
    e(2, 'db_password', ['entity.name.variable.var']);
    e(2, 'string', ['storage.type']);
    e(2, 'sensitive', ['storage.modifier.sensitive']);
    e(3, 'sensitive', ['entity.name.type.resource'], ['storage.modifier']);
    e(3, 'aws.vpc', ['string.quoted.double', 'meta.resource-type']);
    e(4, 'sensitive', ['variable.other.property'], ['storage.modifier']);
    e(4, 'true', ['constant.language.boolean']);
    e(5, 'output', ['variable.other.property'], ['keyword']);
    e(5, 'null', ['constant.language.null']);
    e(6, 'flow', ['keyword.other.declaration']);
    e(6, 'refresh', ['variable.other.property']);
    e(7, '-3.5e2', ['constant.numeric']);
    e(8, 'public_a', ['variable.other.readwrite']);
    e(8, 'id', ['variable.other.member']);
    e(8, 'var', ['variable.language']);
    e(8, '0', ['constant.numeric']);
    e(9, 'dynamic', ['entity.name.tag.block']);
    e(9, 'x', ['string.quoted.double']);
    e(9, 'lbl', ['entity.name.label']);
    e(9, '{', ['punctuation.section.braces.begin']);
    e(11, 'prod', ['entity.name.type']);
    e(12, 'credentials', ['keyword.other.declaration']);
    e(12, 'aws', ['entity.name.type']);
    e(12, 'aws_keys', ['variable.other.readwrite']);
    e(14, 'service', ['keyword.other.declaration']);
    e(15, 'conn', ['entity.name.variable.output']);
    e(15, 'sensitive', ['storage.modifier.sensitive']);
    e(16, 'unclosed', ['string.quoted.double']);
    e(17, 'plugin', ['keyword.other.declaration'], ['string']);
  });

  if (failures.length) {
    console.log(`\n${failures.length} of ${checks} checks failed:`);
    failures.forEach((f) => console.log(`  ${f}`));
    process.exit(1);
  }
  console.log(`\nall ${checks} checks passed`);
}

main().catch((e) => { console.error(e); process.exit(1); });
