// SPDX-License-Identifier: GPL-2.0-or-later
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { closeRoot, confirmBinding, holdObject, openHostRoot } from '../src/policy/path-gate';
import { acceptHelper, passt, startHelper, writePolicy } from './passt-double/passt-double';
import { temporaryDirectory, unusualLines } from './lib';

function policyFor(dir: string, rules: object[]): string {
  return writePolicy(dir, { version: 1, rules });
}

t.test('an allowed socket is connected to; a disallowed one never is', async (t) => {
  const dir = temporaryDirectory();
  const allowed = path.join(dir, 'a.repair');
  const other = path.join(dir, 'b.socket');
  const allowedListener = passt.listenUnix(allowed);
  const otherListener = passt.listenUnix(other);
  const policy = policyFor(dir, [{ name: 'only-repair', sockets: [`${dir}/*.repair`], peer: {} }]);

  const served = startHelper(['--policy', policy, allowed]);
  const sock = await acceptHelper(allowedListener);
  fs.closeSync(sock);
  t.match(await served.exited, { code: 0 });

  const refused = await startHelper(['--policy', policy, other]).exited;
  t.equal(refused.code, 1);
  t.same(unusualLines(refused.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${other}: no rule of ${policy} allows connecting to this socket`]);
  t.equal(passt.accept(otherListener, 0), -1, 'the refused socket saw no connection');

  // Symlinks are resolved, and the target is what is checked.
  fs.symlinkSync(allowed, path.join(dir, 'short'));
  fs.symlinkSync(other, path.join(dir, 'sneaky.repair'));
  const viaLink = startHelper(['--policy', policy, path.join(dir, 'short')]);
  fs.closeSync(await acceptHelper(allowedListener));
  t.match(await viaLink.exited, { code: 0 });
  const viaBadLink = await startHelper(['--policy', policy, path.join(dir, 'sneaky.repair')]).exited;
  t.equal(viaBadLink.code, 1);
  t.match(viaBadLink.stderr, `${other}: no rule`);
  t.equal(passt.accept(otherListener, 0), -1);
  fs.closeSync(allowedListener);
  fs.closeSync(otherListener);
});

t.test('swap race: a socket moved after it was opened is refused, a symlink swapped in is never followed', async (t) => {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const original = passt.listenUnix(socketPath);

  // Gate 1's own steps, with the swap deterministically in between.
  const root = openHostRoot();
  t.teardown(() => closeRoot(root));
  const held = holdObject(root, socketPath);
  t.equal(held.path, socketPath, 'the canonical path is the one the helper built');
  fs.renameSync(socketPath, path.join(dir, 'moved-away'));
  const replacement = passt.listenUnix(socketPath);
  t.throws(() => confirmBinding(root, held), { gate: 'path', message: `${socketPath} now names another object than the one opened: replaced after it was opened` });
  fs.closeSync(held.fd);

  // A symlink to the original where the path was: a symlink now, refused.
  fs.closeSync(replacement);
  fs.unlinkSync(socketPath);
  const heldAgain = holdObject(root, path.join(dir, 'moved-away'));
  fs.symlinkSync(path.join(dir, 'passt.repair.elsewhere'), path.join(dir, 'link'));
  fs.renameSync(path.join(dir, 'moved-away'), path.join(dir, 'passt.repair.elsewhere'));
  fs.renameSync(path.join(dir, 'link'), path.join(dir, 'moved-away'));
  t.throws(() => confirmBinding(root, heldAgain), { gate: 'path', message: `${dir}/moved-away is a symlink now: the path checked has changed since` });
  fs.closeSync(heldAgain.fd);
  t.equal(passt.accept(original, 0), -1, 'nothing connected');
  fs.closeSync(original);
});

t.test('directory mode: the directory is checked first, each socket found before connecting', async (t) => {
  const dir = temporaryDirectory();
  const waitIn = path.join(dir, 'wait');
  fs.mkdirSync(waitIn);
  const policy = policyFor(dir, [
    { name: 'wait', sockets: [`${waitIn}/good-*.repair`], directories: [waitIn], peer: {} },
    { name: 'unrelated', sockets: [`${waitIn}/bad-*.repair`], peer: {} },
  ]);
  const notAllowed = await startHelper(['--policy', policy, '--timeout', '1', dir]).exited;
  t.equal(notAllowed.code, 1);
  t.same(unusualLines(notAllowed.stderr).slice(0, 1), [`passt-repair: gate 1 (path) refused: ${dir}: no rule of ${policy} allows waiting in this directory`]);

  const helper = startHelper(['--policy', policy, waitIn]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const bad = passt.listenUnix(path.join(waitIn, 'bad-1.repair'));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const good = passt.listenUnix(path.join(waitIn, 'good-1.repair'));
  fs.closeSync(await acceptHelper(good));
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
  t.match(stderr, `skipping ${waitIn}/bad-1.repair: no rule that allows ${waitIn} allows this socket`);
  t.equal(passt.accept(bad, 0), -1, 'the non-matching socket saw no connection');
  fs.closeSync(bad);
  fs.closeSync(good);
});

t.test('directory mode: a directory swapped after the helper started waiting is not followed', async (t) => {
  const dir = temporaryDirectory();
  const waitIn = path.join(dir, 'wait');
  fs.mkdirSync(waitIn);
  const policy = policyFor(dir, [{ name: 'wait', sockets: [`${dir}/**/*.repair`], directories: [waitIn], peer: {} }]);
  const helper = startHelper(['--policy', policy, '--timeout', '1.5', waitIn]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  fs.renameSync(waitIn, path.join(dir, 'old'));
  fs.mkdirSync(waitIn);
  const replacement = passt.listenUnix(path.join(waitIn, 'x.repair'));
  const { code, stderr } = await helper.exited;
  t.equal(code, 1);
  t.match(stderr, /accepted a connection within 1\.5 s/);
  t.equal(passt.accept(replacement, 0), -1, 'the replacement directory\'s socket saw no connection');
  fs.closeSync(replacement);
});
