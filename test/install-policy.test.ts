// SPDX-License-Identifier: GPL-2.0-or-later
// The install step against an attacker: another uid (setpriv) plants an
// "etc" symbolic link in a root-owned sticky --root; --root arguments that
// cd(1) would take as options; an existing policy the helper will refuse.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './passt-double/passt-double';
import { NOBODY, temporaryDirectory } from './lib';

const INSTALL_POLICY = path.join(ROOT, 'bin/passt-repair-install-policy');

function install(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const result = spawnSync(INSTALL_POLICY, args, { encoding: 'utf8', ...options });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs `command` as uid/gid 65534: the other user. */
function asNobody(...command: string[]): void {
  const result = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...command], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`as nobody: ${command.join(' ')}: ${result.stderr}`);
}

/** A root-owned sticky directory anyone can create entries in, like /tmp. */
function stickyRoot(t: Test): string {
  const dir = temporaryDirectory();
  fs.chmodSync(dir, 0o1777);
  t.teardown(() => fs.rmSync(dir, { recursive: true }));
  return dir;
}

t.test('--root a sticky directory: an "etc" symlink planted by another user to a root-owned directory is refused, not followed', async (t) => {
  const root = stickyRoot(t);
  const elsewhere = temporaryDirectory(); // root's, 0700: where the link would send the policy
  t.teardown(() => fs.rmSync(elsewhere, { recursive: true }));
  asNobody('ln', '-s', elsewhere, path.join(root, 'etc'));
  t.equal(fs.lstatSync(path.join(root, 'etc')).uid, NOBODY, 'the link is the other user\'s');
  const result = install(['--root', root]);
  t.equal(result.status, 1, 'exit 1');
  t.equal(result.stderr, `passt-repair-install-policy: ${root}/etc is a symbolic link: refusing to install a policy through it\n`);
  t.same(fs.readdirSync(elsewhere), [], 'nothing installed outside DIR');
});

t.test('--root a sticky directory: an "etc" symlink into the other user\'s directory creates nothing there', async (t) => {
  const root = stickyRoot(t);
  const theirs = temporaryDirectory();
  t.teardown(() => fs.rmSync(theirs, { recursive: true }));
  fs.chownSync(theirs, NOBODY, NOBODY);
  asNobody('ln', '-s', theirs, path.join(root, 'etc'));
  const result = install(['--root', root]);
  t.equal(result.status, 1);
  t.match(result.stderr, 'is a symbolic link: refusing');
  t.same(fs.readdirSync(theirs), [], 'no root-owned passt-repair/ left in the user\'s directory');
});

t.test('--root a sticky directory: an "etc" directory of the other user\'s is refused before anything is created in it', async (t) => {
  const root = stickyRoot(t);
  asNobody('mkdir', path.join(root, 'etc'));
  const result = install(['--root', root]);
  t.equal(result.status, 1);
  t.equal(result.stderr, `passt-repair-install-policy: ${root}/etc is not owned by root: refusing to install a policy below it\n`);
  t.same(fs.readdirSync(path.join(root, 'etc')), [], 'no passt-repair/ created in it');
});

t.test('--root -P, -L and - are directories, not options of cd', async (t) => {
  const cwd = temporaryDirectory();
  const home = temporaryDirectory(); // where "cd -P" alone would go
  const oldpwd = temporaryDirectory(); // where "cd -" would go
  t.teardown(() => [cwd, home, oldpwd].forEach((dir) => fs.rmSync(dir, { recursive: true })));
  for (const name of ['-P', '-L', '-']) {
    fs.mkdirSync(path.join(cwd, name));
    const result = install(['--root', name], { cwd, env: { ...process.env, HOME: home, OLDPWD: oldpwd } });
    t.equal(result.status, 0, `--root ${name}: ${result.stderr}`);
    t.ok(fs.statSync(path.join(cwd, name, 'etc/passt-repair/policy.json')).isFile(), `installed under ./${name}`);
  }
  t.same(fs.readdirSync(home), [], 'nothing in $HOME');
  t.same(fs.readdirSync(oldpwd), [], 'nothing in $OLDPWD');
});

t.test('an existing policy the helper will refuse (another user\'s, mode 0666) is left alone and reported: exit 1', async (t) => {
  const root = temporaryDirectory();
  t.teardown(() => fs.rmSync(root, { recursive: true }));
  const dir = path.join(root, 'etc/passt-repair');
  fs.mkdirSync(dir, { recursive: true });
  const policy = path.join(dir, 'policy.json');
  fs.writeFileSync(policy, '{"version": 1, "rules": []}\n');
  fs.chownSync(policy, NOBODY, NOBODY);
  fs.chmodSync(policy, 0o666);
  const result = install(['--root', root]);
  t.equal(result.status, 1, 'exit 1');
  t.match(result.stderr, `passt-repair-install-policy: ${policy} already exists and is left alone, but passt-repair will refuse it: `);
  t.match(result.stderr, `owned by uid ${NOBODY}`);
  t.equal(fs.readFileSync(policy, 'utf8'), '{"version": 1, "rules": []}\n', 'left alone');
  t.equal(fs.statSync(policy).uid, NOBODY);
});
