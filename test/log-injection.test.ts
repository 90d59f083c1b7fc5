// SPDX-License-Identifier: GPL-2.0-or-later
// Forged audit lines: values chosen by someone else (the name of the socket
// the helper connects to, the peer's executable name) that contain line
// breaks must not make the text audit log show a line the helper did not
// write (src/log/escape.ts).
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { escapeLine } from '../src/log/escape';
import { acceptHelper, awaitReply, passt, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, startTestHelper, temporaryDirectory } from './lib';

/** What an attacker wants to see as a line of its own. */
const FORGED = 'passt-repair: end: passt closed the connection; 0 request(s), 0 socket(s) in 1 ms';

/** Every line that starts as the helper's own lines do. */
function helperLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '');
}

t.test('escapeLine: every control character, DEL, C1, U+2028/2029 and the backslash become visible escapes', async (t) => {
  t.equal(escapeLine('a\nb\rc\td\\e'), 'a\\nb\\rc\\td\\\\e');
  t.equal(escapeLine('\u0000\u001b[31m\u007f\u0085\u009b'), '\\x00\\x1b[31m\\x7f\\x85\\x9b');
  t.equal(escapeLine('x\u2028y\u2029z'), 'x\\u2028y\\u2029z');
  t.equal(escapeLine('plain /run/passt/vm.repair é ü'), 'plain /run/passt/vm.repair é ü', 'printable text, Latin-1 letters included, is left alone');
  const unsafe: string[] = [];
  for (let code = 0; code < 0x10000; code++) if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(escapeLine(String.fromCharCode(code)))) unsafe.push(code.toString(16));
  t.same(unsafe, [], 'no character of the Basic Multilingual Plane survives unescaped if unsafe');
});

t.test('a socket name with line breaks: one line per event, the name escaped, no forged line', async (t) => {
  const loopback = await loopbackConnections(1);
  t.teardown(() => loopback.close());
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // sun_path holds 107 bytes: a short forged line.
  const forged = 'passt-repair: end: done';
  const name = `0\n${forged}\r\n\u2028x`;
  const socketPath = path.join(dir, name);
  const listener = passt.listenUnix(socketPath);
  const helper = startTestHelper([socketPath]);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'served');
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0);
  const lines = helperLines(stderr);
  t.equal(lines.length, 4, 'start, connected, one command line, end: nothing more');
  for (const line of lines) t.match(line, /^passt-repair: (start: |connected to |TCP_REPAIR_ON: |end: )/, 'a line the helper wrote');
  t.notOk(lines.includes(forged), 'the forged line is not a line');
  t.equal(lines.filter((line) => line.startsWith('passt-repair: end: ')).length, 1, 'one end line');
  t.ok(lines[0]!.includes(`path ${escapeLine(socketPath)}, policy`), 'the start line names the socket, escaped');
  t.ok(lines[1]!.includes(escapeLine(name)), 'the connected line names the socket, escaped');
});

t.test("the peer's executable name with line breaks: escaped in the connected line", async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // passt's side run from a hard link to node whose name carries the forged
  // line: /proc/PID/exe names the link.
  const node = path.join(dir, `node\n${FORGED}`);
  try {
    fs.linkSync(fs.realpathSync(process.execPath), node);
  } catch {
    fs.copyFileSync(fs.realpathSync(process.execPath), node);
    fs.chmodSync(node, 0o755);
  }
  const socketPath = path.join(dir, 'passt.repair');
  const peer = spawn(node, [path.join(__dirname, 'fixtures/passt-listener.js'), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  peer.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const peerExited = new Promise<void>((resolve) => peer.on('close', () => resolve()));
  while (!output.includes('listening\n')) {
    if (peer.exitCode !== null) throw new Error('the listener exited early');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const { code, stderr } = await startTestHelper([socketPath]).exited;
  await peerExited;
  t.match(JSON.parse(output.split('\n')[1]!), { reply: TCP_REPAIR_ON }, 'the peer was served');
  t.equal(code, 0);
  const lines = helperLines(stderr);
  t.equal(lines.length, 4, 'start, connected, one command line, end: nothing more');
  for (const line of lines) t.match(line, /^passt-repair: (start: |connected to |TCP_REPAIR_ON: |end: )/, 'a line the helper wrote');
  t.notOk(lines.includes(FORGED), 'the forged line is not a line');
  t.ok(lines[1]!.endsWith(`executable ${escapeLine(node)}`), 'the connected line names the executable, escaped');
});
