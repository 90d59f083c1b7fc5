// SPDX-License-Identifier: GPL-2.0-or-later
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { HELPER, writePolicy } from './passt-double/passt-double';
import { temporaryDirectory } from './lib';

const policy = writePolicy(temporaryDirectory(), { version: 1, rules: [] });

function run(...args: string[]) {
  const result = spawnSync(HELPER, args, { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

t.test('--version prints the package version', async (t) => {
  const { code, stdout, stderr } = run('--version');
  t.equal(code, 0);
  t.match(stdout, /^passt-repair \d+\.\d+\.\d+\n$/);
  t.equal(stderr, '');
});

t.test('--help prints usage on stdout and exits 0', async (t) => {
  for (const flag of ['--help', '-h']) {
    const { code, stdout } = run(flag);
    t.equal(code, 0);
    t.match(stdout, /^Usage: passt-repair \[OPTIONS\] PATH/);
    t.match(stdout, /--timeout SECONDS/);
  }
});

t.test('usage errors exit 2 with one line saying what was wrong', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /PATH is missing; name passt's repair socket, or the directory in which passt will create it\n/],
    [['a', 'b'], /one PATH expected, got "a" and "b"; a helper serves one socket or directory\n/],
    [['--frobnicate', 'x'], /unknown option "--frobnicate"\n/],
    [['--polcy', 'x'], /unknown option "--polcy"; did you mean "--policy"\?\n/],
    [['--timout=3', 'x'], /unknown option "--timout=3"; did you mean "--timeout"\?\n/],
    [['--check-polic', 'x'], /unknown option "--check-polic"; did you mean "--check-policy"\?\n/],
    [['--policy'], /--policy needs a FILE, the policy to use \(the default is \/etc\/passt-repair\/policy\.json\)\n/],
    [['--explain'], /--explain needs a PATH, the socket or directory to explain\n/],
    [['--check-policy', '--explain', 'x'], /--check-policy does not go with --explain; check the policy first, then run the other\n/],
    [['--check-policy', '--policy', 'a', 'b'], /one policy FILE expected, got "a" and "b"; give it either after --check-policy or with --policy\n/],
    [['--explain', 'a', 'b'], /--explain takes one PATH, got "a" and "b"; explain one path at a time\n/],
    [['--explain', 'a', '--timeout', '1'], /--explain does not go with --timeout: --explain waits for nothing; drop --timeout\n/],
    [['--timeout', 'soon', 'x'], /--timeout needs a number of seconds greater than 0, not "soon"/],
    [['--timeout', '0', 'x'], /--timeout needs a number/],
    [['--timeout'], /--timeout needs a number/],
    [[''], /PATH is empty; name passt's repair socket, or the directory in which passt will create it\n/],
  ];
  for (const [args, message] of cases) {
    const { code, stderr, stdout } = run(...args);
    t.equal(code, 2, `exit 2 for ${JSON.stringify(args)}`);
    t.match(stderr, message);
    t.match(stderr, /^passt-repair: .*\npasst-repair: try "passt-repair --help"\n$/);
    t.equal(stdout, '');
  }
});

t.test('a PATH that is neither socket nor directory exits 1', async (t) => {
  t.match(run('--policy', policy, '/nonexistent/x.repair'), { code: 1, stderr: /nonexistent\/x\.repair: no such file or directory/ });
  t.match(run('--policy', policy, '/etc/hostname'), { code: 1, stderr: /\/etc\/hostname is not a socket or a directory/ });
});

t.test('-- ends options, so a PATH may start with a dash', async (t) => {
  t.match(run('--policy', policy, '--', '-nonexistent'), { code: 1, stderr: /-nonexistent: no such file or directory/ });
});
