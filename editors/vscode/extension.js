'use strict';
// The VS Code side of `stackpipe lsp`: it starts the server for .pipeline
// files and restarts it when its settings change. Diagnostics and the rest
// come from the server; highlighting comes from syntaxes/. Plain CommonJS,
// so the extension runs as written, with no build step.

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');
const { foldingRanges } = require('./folding');

let client;
// One channel for the server's stderr across restarts (a client that makes
// its own disposes it only when stopped, and a failed one never is).
let output;
// Starts and stops run one after another: a settings change while the
// server is still starting waits for that start to end.
let queue = Promise.resolve();

function createClient() {
  const config = vscode.workspace.getConfiguration('stackpipe.server');
  const command = config.get('path') || 'stackpipe';
  const args = ['lsp', ...config.get('extraArgs', [])];
  // In a workspace the user has not trusted, the server does not load the
  // plugins the files name (no schemas: no hover or checks from them).
  if (!vscode.workspace.isTrusted) args.push('--no-plugin-schemas');
  // No `transport` key: stdio is the default, and the command line stays
  // exactly `<path> lsp <extraArgs>` (an explicit TransportKind.stdio
  // would append `--stdio`).
  const serverOptions = { command, args };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'pipeline' },
      { scheme: 'untitled', language: 'pipeline' },
    ],
    outputChannel: output,
  };
  return new LanguageClient('stackpipe', 'stackpipe', serverOptions, clientOptions);
}

async function start() {
  client = createClient();
  try {
    await client.start();
  } catch (err) {
    const path = vscode.workspace.getConfiguration('stackpipe.server').get('path');
    vscode.window.showErrorMessage(
      `stackpipe: could not start \`${path} lsp\`: ${err && err.message ? err.message : err}. ` +
        'Set stackpipe.server.path to the stackpipe executable.');
  }
}

async function stop() {
  const old = client;
  client = undefined;
  // A client whose server failed to start has nothing to stop.
  if (old && old.isRunning()) {
    await old.stop().catch(() => {});
  }
}

function restart() {
  queue = queue.then(stop).then(start);
  return queue;
}

function activate(context) {
  output = vscode.window.createOutputChannel('stackpipe');
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('stackpipe.restartServer', restart),
    vscode.workspace.onDidGrantWorkspaceTrust(restart),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('stackpipe.server')) restart();
    }),
    vscode.languages.registerFoldingRangeProvider({ language: 'pipeline' }, {
      provideFoldingRanges(document) {
        return foldingRanges(document.getText()).map((r) => new vscode.FoldingRange(
          r.start, r.end, r.kind === 'comment' ? vscode.FoldingRangeKind.Comment : undefined));
      },
    }),
  );
  queue = queue.then(start);
  return queue;
}

function deactivate() {
  queue = queue.then(stop);
  return queue;
}

module.exports = { activate, deactivate };
