// SPDX-License-Identifier: GPL-2.0-or-later
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HELPER, ROOT, writePolicy } from './passt-double/passt-double';
import { loadPolicy, PolicyError } from '../src/policy';
import { parsePolicy } from '../src/policy/load';
import { compilePattern } from '../src/policy/pattern';
import { directoryCanHoldSocket } from '../src/policy/overlap';
import { temporaryDirectory } from './lib';

const rule = { name: 'r', sockets: ['/run/passt/*.repair'], peer: {} };

function refusal(text: string): string {
  try {
    parsePolicy('p.json', text);
  } catch (error) {
    if (error instanceof PolicyError) return error.message;
    throw error;
  }
  throw new Error(`accepted: ${text}`);
}

t.test('a minimal policy gets the documented defaults', async (t) => {
  const policy = parsePolicy('p.json', JSON.stringify({ version: 1, rules: [rule] }));
  // No account named: chosen at start (src/sandbox/account.ts, test/account.test.ts).
  t.same(policy.sandbox, { user: undefined, seccomp: 'kill' });
  t.same(policy.rules[0]!.peer, { sameOwner: true, uids: undefined, gids: undefined });
  t.same(policy.rules[0]!.directories, []);
  const full = parsePolicy('p.json', JSON.stringify({ version: 1, sandbox: { user: 'passt-repair', seccomp: 'log' }, rules: [{ ...rule, peer: { sameOwner: false, uids: [1], gids: [2] } }] }));
  t.same(full.sandbox, { user: 'passt-repair', seccomp: 'log' });
  t.same(full.rules[0]!.peer, { sameOwner: false, uids: [1], gids: [2] });
});

t.test('syntax errors are reported at their line and column', async (t) => {
  t.equal(refusal('{\n  "version": 1,\n}'), 'p.json:2:15: invalid JSON: a trailing comma before "}": JSON allows no comma after the last member; remove it');
  t.equal(refusal('{"version": 1, "rules": [{}, ]}'), 'p.json:1:28: invalid JSON: a trailing comma before "]": JSON allows no comma after the last element; remove it');
  t.equal(refusal('{version: 1}'), 'p.json:1:2: invalid JSON: expected a key in double quotes, found "v"; write "version"');
  t.equal(refusal("{'version': 1}"), 'p.json:1:2: invalid JSON: expected a key in double quotes, found "\'"; JSON strings and keys take double quotes, not single');
  t.equal(refusal('{"version": 1, // one\n}'), 'p.json:1:16: invalid JSON: expected a key in double quotes, found "/"; JSON allows no comments: remove it');
  t.equal(refusal('{"version": 1, "rules": ["/a\\x"]}'), 'p.json:1:29: invalid JSON: invalid escape "\\x" in a string; JSON knows \\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX (write "\\\\" for a backslash)');
  t.equal(refusal('{"version": 1, "rules": ["/a'), 'p.json:1:26: invalid JSON: this string is never closed; add its closing double quote');
  t.equal(refusal('{"version": 1,\n "rules": [] } x'), 'p.json:2:16: invalid JSON: expected the end of the file, found "x"');
  t.equal(refusal('{"version": 01}'), 'p.json:1:14: invalid JSON: expected "}", found "1"');
  t.equal(refusal(''), 'p.json:1:1: invalid JSON: expected a value, found the end of the file');
  t.equal(refusal('{"version": 1, "rules": [],\n "version": 1}'), 'p.json:2:2: invalid JSON: duplicate key "version" (first at line 1); keep one of them');
  t.match(refusal('{"a": "x\ny"}'), /control character/);
});

t.test('schema errors: every mistake, FILE:LINE:COLUMN: /pointer: what was expected', async (t) => {
  const text = `{
  "version": 2,
  "sandbox": { "seccomp": "warn", "user": "" },
  "rules": [
    { "name": "a", "sockets": ["/run/*.repair"], "peer": { "sameowner": true, "uids": [-1] } },
    { "name": "b", "sockets": [], "peer": { "gids": [1, 1] }, "idle": 3 },
    { "name": "c", "directories": ["/run"] }
  ]
}`;
  t.equal(
    refusal(text),
    [
      'p.json:2:3: /version: expected 1, found 2',
      'p.json:3:16: /sandbox/seccomp: expected one of "kill", "log", found "warn"',
      'p.json:3:35: /sandbox/user: is empty; expected a non-empty string',
      'p.json:3:35: /sandbox/user: "" is not allowed here: expected a string matching ^[a-z_][a-z0-9_.-]*[$]?$',
      'p.json:5:60: /rules/0/peer/sameowner: unknown key "sameowner"; did you mean "sameOwner"?',
      'p.json:5:88: /rules/0/peer/uids/0: expected at least 0, found -1',
      'p.json:6:20: /rules/1/sockets: expected at least 1 item, found 0',
      'p.json:6:45: /rules/1/peer/gids: items 0 and 1 are the same; remove one',
      'p.json:6:63: /rules/1/idle: unknown key "idle"; the keys allowed here are "name", "sockets", "directories", "peer", "processRoot", "limits"',
      'p.json:7:5: /rules/2: missing the required key "sockets"; add it',
      'p.json:7:5: /rules/2: missing the required key "peer"; add it',
    ].join('\n'),
  );
  t.equal(refusal('[]'), 'p.json:1:1: /: expected an object, found an array');
  t.equal(refusal('{"version": 1, "rules": {}}'), 'p.json:1:16: /rules: expected an array, found an object');
  t.equal(refusal('{"version": 1, "rules": [{"name": "r", "sockets": ["/a"], "peer": {"sameOwner": "yes"}}]}'), 'p.json:1:68: /rules/0/peer/sameOwner: expected true or false, found a string');
  t.equal(refusal('{"version": 1}'), 'p.json:1:1: /: missing the required key "rules"; add it');
  t.equal(refusal(`{"version": 1, "rules": [{"name": "${'n'.repeat(65)}", "sockets": ["/a"], "peer": {"uids": [4294967295]}}]}`),
    ['p.json:1:27: /rules/0/name: is too long; expected at most 64 characters', 'p.json:1:141: /rules/0/peer/uids/0: expected at most 4294967294, found 4294967295'].join('\n'));
  t.equal(refusal('{"version": 1, "__proto__": {}, "rules": []}'), 'p.json:1:16: /__proto__: unknown key "__proto__"; the keys allowed here are "version", "sandbox", "log", "telemetry", "rules"');
});

t.test('an unknown key close to a known one is suggested, from the schema, at any depth', async (t) => {
  const text = `{
  "version": 1,
  "sandbox": { "usr": "nobody" },
  "rule": [],
  "rules": [{ "name": "r", "socket": ["/a"], "dirctories": ["/a"], "peer": { "uid": [1], "SameOwner": true } }]
}`;
  t.equal(
    refusal(text),
    [
      'p.json:3:16: /sandbox/usr: unknown key "usr"; did you mean "user"?',
      'p.json:4:3: /rule: unknown key "rule"; did you mean "rules"?',
      'p.json:5:13: /rules/0: missing the required key "sockets"; add it',
      'p.json:5:28: /rules/0/socket: unknown key "socket"; did you mean "sockets"?',
      'p.json:5:46: /rules/0/dirctories: unknown key "dirctories"; did you mean "directories"?',
      'p.json:5:78: /rules/0/peer/uid: unknown key "uid"; did you mean "uids"?',
      'p.json:5:90: /rules/0/peer/SameOwner: unknown key "SameOwner"; did you mean "sameOwner"?',
    ].join('\n'),
  );
});

t.test('every rule problem is listed at once: duplicate names, directories no socket pattern can serve', async (t) => {
  const text = `{
  "version": 1,
  "rules": [
    { "name": "x", "sockets": ["/a/*.repair"], "peer": {} },
    { "name": "x", "sockets": ["/b/*.sock", "/c/**"], "directories": ["/b", "/c/d", "/e/*"], "peer": {} },
    { "name": "x", "sockets": ["/f/*.repair"], "directories": ["/f", "/f/g"], "peer": {} }
  ]
}`;
  t.equal(
    refusal(text),
    [
      'p.json:5:7: /rules/1/name: a rule named "x" exists already (line 4); rename one of them: names must be unique',
      'p.json:5:71: /rules/1/directories/0: no "sockets" pattern of rule "x" can match a socket NAME.repair in a directory "/b" matches, so the helper would wait there and refuse what it finds; add a "sockets" pattern such as "/b/*.repair"',
      'p.json:5:85: /rules/1/directories/2: no "sockets" pattern of rule "x" can match a socket NAME.repair in a directory "/e/*" matches, so the helper would wait there and refuse what it finds; add a "sockets" pattern such as "/e/*/*.repair"',
      'p.json:6:7: /rules/2/name: a rule named "x" exists already (line 4); rename one of them: names must be unique',
      'p.json:6:70: /rules/2/directories/1: no "sockets" pattern of rule "x" can match a socket NAME.repair in a directory "/f/g" matches, so the helper would wait there and refuse what it finds; add a "sockets" pattern such as "/f/g/*.repair"',
    ].join('\n'),
  );
  // A schema mistake elsewhere does not hide them.
  t.match(refusal(text.replace('"version": 1', '"version": 2')), /expected 1, found 2\n.*exists already/);
});

t.test('a directory pattern serves when some socket pattern can match a NAME.repair in it (exact, for every pattern form)', async (t) => {
  const serves: [string, string][] = [
    ['/run/passt', '/run/passt/*.repair'],
    ['/run/passt', '/run/passt/*.socket.repair'],
    ['/run/passt', '/run/passt/x.repair'],
    ['/run/passt', '/run/**'],
    ['/run/passt', '/**/*.repair'],
    ['/run/*/passt', '/run/a/passt/?.repair'],
    ['/run/**', '/run/x/y/z.repair'],
    ['/run/**', '/run/z.repair'],
    ['/pods/*/p', '/pods/*/p/*.socket.repair'],
    ['/a/**/b', '/a/b/c.repair'],
    ['/a/x*', '/a/xyz/q.repair'],
    ['/a/*', '/a/*a*/*r'],
  ];
  const never: [string, string][] = [
    ['/run/passt', '/run/passt/*.sock'],
    ['/run/passt', '/run/passt'],
    ['/run/passt', '/run/passt/a/*.repair'],
    ['/run/passt', '/run/other/*.repair'],
    ['/run/passt', '/run/*.repair'],
    ['/run/**', '/srv/**'],
    ['/a/x*', '/a/y*/*.repair'],
    ['/a/?', '/a/bc/*.repair'],
    ['/a/**/b', '/a/c/*.repair'],
  ];
  for (const [directory, socket] of serves) t.ok(directoryCanHoldSocket(directory, socket), `${directory} can hold ${socket}`);
  for (const [directory, socket] of never) t.notOk(directoryCanHoldSocket(directory, socket), `${directory} cannot hold ${socket}`);
});

t.test('the overlap decision agrees with the matcher itself, for every pair of small patterns', async (t) => {
  // Every pattern of up to two segments from these, against every directory
  // of up to four segments from a small alphabet (deep enough for a witness
  // of any of these pairs) and every child NAME.repair: the automaton says
  // "can hold" exactly when some real path matches both.
  const segments = ['a', '*', '?', '**', 'a*'];
  const patterns = segments.flatMap((first) => [`/${first}`, ...segments.map((second) => `/${first}/${second}`)]);
  const sockets = patterns.flatMap((directory) => ['*.repair', '?.repair', 'a*', '*', 'b.repair', '**', 'x'].map((name) => `${directory}/${name}`));
  const directories: string[] = [];
  const grow = (prefix: string, depth: number): void => {
    if (depth > 0) directories.push(prefix);
    if (depth < 4) for (const word of ['a', 'b', 'ab']) grow(`${prefix}/${word}`, depth + 1);
  };
  grow('', 0);
  const children = ['.repair', 'a.repair', 'b.repair', 'ab.repair'];
  const disagreements: string[] = [];
  for (const directory of patterns) {
    const inside = directories.filter(compilePattern(directory));
    for (const socket of sockets) {
      const matches = compilePattern(socket);
      const witnessed = inside.some((path) => children.some((child) => matches(`${path}/${child}`)));
      if (witnessed !== directoryCanHoldSocket(directory, socket)) disagreements.push(`${directory} / ${socket}: a path ${witnessed ? 'exists' : 'does not exist'}`);
    }
  }
  t.same(disagreements, [], `${patterns.length * sockets.length} pairs`);
});

t.test('patterns: relative, ".", "..", empty segments, trailing "/" and "**" inside a segment are refused', async (t) => {
  for (const pattern of ['run/x', './x', '/run/../x', '/run/./x', '/run//x', '/run/', '/', '', '/run/a**', '/run/**b', '/***', '/..', '/run/..']) {
    t.match(refusal(JSON.stringify({ version: 1, rules: [{ ...rule, sockets: [pattern] }] })), /\/rules\/0\/sockets\/0: /, JSON.stringify(pattern));
  }
  // Each mistake in its own words, with the pattern to write instead where there is one.
  const mistakes: [string, string][] = [
    ['', 'an empty pattern; write an absolute path such as "/run/passt/*.repair"'],
    ['run/x', '"run/x" is relative; patterns are absolute paths: write "/run/x"'],
    ['/', '"/" alone names no directory or socket; write the path of one, such as "/run/passt"'],
    ['/run/../x', '"/run/../x" has a ".." segment; patterns match paths with every symlink and ".." resolved: write the path it means without ".."'],
    ['/run/./x', '"/run/./x" has a "." segment; write it without: "/run/x"'],
    ['/run/', '"/run/" ends in "/"; write it without: "/run" (a "directories" pattern names the directory itself)'],
    ['/run//x', '"/run//x" has an empty segment ("//"); write it with single slashes: "/run/x"'],
    ['/run/a**', '"/run/a**" has "**" inside the segment "a**"; "**" must be a whole segment ("/run/**/x", any depth), and "*" matches within one segment'],
    ['/***', '"/***" has "**" inside the segment "***"; "**" must be a whole segment ("/run/**/x", any depth), and "*" matches within one segment'],
  ];
  for (const [pattern, message] of mistakes)
    t.equal(refusal(JSON.stringify({ version: 1, rules: [{ ...rule, directories: [pattern] }] })), `p.json:1:94: /rules/0/directories/0: ${message}`, JSON.stringify(pattern));
  for (const pattern of ['/a', '/a/**', '/**/x', '/a/*b*/?', '/a/.hidden', '/a/..x', '/a/[x]{y}(z)+.$^|\\']) {
    t.doesNotThrow(() => parsePolicy('p.json', JSON.stringify({ version: 1, rules: [{ ...rule, sockets: [pattern] }] })), pattern);
  }
});

t.test('pattern matching: * and ? never cross "/", ** matches whole segments, nothing else is special', async (t) => {
  const cases: [string, string, boolean][] = [
    ['/run/*.repair', '/run/a.repair', true],
    ['/run/*.repair', '/run/.repair', true],
    ['/run/*.repair', '/run/a/b.repair', false],
    ['/run/*.repair', '/run/a.repair/x', false],
    ['/run/?.repair', '/run/a.repair', true],
    ['/run/?.repair', '/run/ab.repair', false],
    ['/run/?/x', '/run///x', false],
    ['/run/*', '/run', false],
    ['/run/**', '/run', true],
    ['/run/**', '/run/a/b/c', true],
    ['/run/**', '/runx', false],
    ['/run/**/x.repair', '/run/x.repair', true],
    ['/run/**/x.repair', '/run/a/b/x.repair', true],
    ['/run/**/x.repair', '/run/a/bx.repair', false],
    ['/run/**/x.repair', '/other/run/x.repair', false],
    ['/run/a.repair', '/run/aXrepair', false],
    ['/run/[ab]', '/run/a', false],
    ['/run/[ab]', '/run/[ab]', true],
    ['/run/{a,b}', '/run/a', false],
    ['/run/a\\*', '/run/a\\xyz', true],
    ['/run/*/x', '/run/../x', true],
    ['/run/x', '/run/x/', false],
  ];
  for (const [pattern, subject, expected] of cases) t.equal(compilePattern(pattern)(subject), expected, `${pattern} ~ ${subject}`);
});

t.test('the example policies are valid', async (t) => {
  const dir = path.join(ROOT, 'policy/examples');
  const names = fs.readdirSync(dir).sort();
  t.same(names, ['kubevirt.json', 'libvirt-session.json', 'libvirt-system.json']);
  for (const name of names) t.doesNotThrow(() => loadPolicy(path.join(dir, name)), name);
  const kubevirt = loadPolicy(path.join(dir, 'kubevirt.json'));
  // As virt-handler names it: the host's /var/lib/kubelet/pods is its /pods.
  const pod = '/pods/0f7e/volumes/kubernetes.io~empty-dir/libvirt-runtime/qemu/run/passt/vm-net0.socket.repair';
  const shortening = kubevirt.rules.find((rule) => rule.processRoot === undefined)!;
  t.ok(shortening.sockets[0]!.matches(pod));
  t.ok(shortening.directories[0]!.matches(path.dirname(pod)));
  t.notOk(shortening.sockets[0]!.matches(pod.replace('/libvirt-runtime/', '/other-volume/')), 'only the libvirt-runtime volume');
  // Current virt-handler: /proc/PID/root/var/run/libvirt/qemu/run/passt, matched inside that root.
  const launcher = kubevirt.rules.find((rule) => rule.processRoot !== undefined)!;
  t.same(launcher.processRoot, { uids: [107], gids: [107] });
  for (const inside of ['/run', '/var/run']) {
    t.ok(launcher.directories.some((pattern) => pattern.matches(`${inside}/libvirt/qemu/run/passt`)), `${inside} directory`);
    t.ok(launcher.sockets.some((pattern) => pattern.matches(`${inside}/libvirt/qemu/run/passt/vm.socket.repair`)), `${inside} socket`);
  }
});

t.test('the schema documents every field', async (t) => {
  const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'policy/policy.schema.json'), 'utf8'));
  t.ok(schema.$schema);
  t.ok(schema.$id);
  const undocumented: string[] = [];
  const visit = (node: Record<string, unknown>, where: string): void => {
    for (const [key, child] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) {
      if (typeof child.description !== 'string' && typeof child.$ref !== 'string') undocumented.push(`${where}/${key}`);
      visit(child, `${where}/${key}`);
    }
    for (const [key, child] of Object.entries((node.definitions ?? {}) as Record<string, Record<string, unknown>>)) visit(child, `#/definitions/${key}`);
  };
  visit(schema, '');
  t.same(undocumented, []);
});

t.test('hostile files: owner, group- or world-writable file or parent, symlinks, non-files', async (t) => {
  const dir = temporaryDirectory();
  const good = { version: 1, rules: [rule] };
  const file = writePolicy(dir, good);
  t.doesNotThrow(() => loadPolicy(file), 'root-owned 0644 in a 0700 directory under sticky /tmp');

  fs.chownSync(file, 65534, 65534);
  t.throws(() => loadPolicy(file), { message: `${file}: owned by uid 65534; a policy and every directory above it must be owned by root (chown root ${file})` });
  fs.chownSync(file, 0, 0);
  for (const mode of [0o664, 0o646, 0o666]) {
    fs.chmodSync(file, mode);
    t.throws(() => loadPolicy(file), { message: `${file}: mode 0${mode.toString(8)} is writable by group or others; a policy and every directory above it must not be (chmod go-w ${file})` });
  }
  fs.chmodSync(file, 0o600);
  t.doesNotThrow(() => loadPolicy(file));

  const nested = path.join(dir, 'etc');
  fs.mkdirSync(nested, { mode: 0o755 });
  const inner = writePolicy(nested, good);
  fs.chmodSync(nested, 0o777);
  t.throws(() => loadPolicy(inner), { message: `${nested}: mode 0777 is writable by group or others; a policy and every directory above it must not be (chmod go-w ${nested})` });
  fs.chmodSync(nested, 0o1777);
  t.doesNotThrow(() => loadPolicy(inner), 'a sticky directory is accepted');
  fs.chmodSync(nested, 0o755);
  fs.chownSync(nested, 65534, 65534);
  t.throws(() => loadPolicy(inner), { message: `${nested}: owned by uid 65534; a policy and every directory above it must be owned by root (chown root ${nested})` });
  fs.chownSync(nested, 0, 0);

  const link = path.join(dir, 'link.json');
  fs.symlinkSync(file, link);
  t.throws(() => loadPolicy(link), { message: `${link}: reached through a symlink (to ${file}); name the policy file by its real path` });
  t.throws(() => loadPolicy(dir), { message: `${dir}: a directory, not a policy file; name the policy file itself with --policy FILE` });
  const fifo = path.join(dir, 'fifo.json');
  spawnSync('mkfifo', ['-m', '0644', fifo]);
  t.throws(() => loadPolicy(fifo), { message: `${fifo}: a FIFO, not a policy file; name the policy file itself with --policy FILE` });
});

function run(...args: string[]) {
  const result = spawnSync(HELPER, args, { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

t.test('--check-policy exits 0 for a valid policy and 1 for an invalid one', async (t) => {
  const dir = temporaryDirectory();
  const file = writePolicy(dir, { version: 1, rules: [rule] });
  t.match(run('--check-policy', file), { code: 0, stdout: `${file}: valid\n`, stderr: '' });
  t.match(run(`--check-policy=${file}`), { code: 0 });
  t.match(run('--policy', file, '--check-policy'), { code: 0 });
  fs.writeFileSync(file, '{"version": 1, "rules": [], "extra": true}');
  t.match(run('--check-policy', file), { code: 1, stdout: '', stderr: `passt-repair: ${file}:1:29: /extra: unknown key "extra"; the keys allowed here are "version", "sandbox", "log", "telemetry", "rules"\n` });
});

t.test('a missing policy names the install command and --policy, in our words', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const missing of [path.join(dir, 'none.json'), path.join(dir, 'no/such/dir/policy.json')])
    t.match(run('--check-policy', missing), {
      code: 1,
      stdout: '',
      stderr: `passt-repair: ${missing}: no policy file here; install one with "passt-repair-install-policy" (as root, then edit it), or name another with --policy FILE\n`,
    });
  // Other failures of the file system, each in words of ours: no "ENOTDIR: ...", no "lstat '...'".
  const file = writePolicy(dir, { version: 1, rules: [rule] });
  const throughFile = path.join(file, 'policy.json');
  const notDirectory = run('--check-policy', throughFile);
  t.equal(notDirectory.stderr, `passt-repair: ${throughFile}: a component of this path is not a directory; name the policy file with --policy FILE\n`);
  const loop = path.join(dir, 'loop');
  fs.symlinkSync(loop, loop);
  t.equal(run('--check-policy', path.join(loop, 'policy.json')).stderr, `passt-repair: ${loop}/policy.json: a loop of symbolic links; name the policy file by its real path\n`);
  // As another user, a root-only directory: permission denied, and what to do.
  const closed = path.join(dir, 'closed');
  fs.mkdirSync(closed, { mode: 0o700 });
  writePolicy(closed, { version: 1, rules: [rule] });
  const denied = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', HELPER, '--check-policy', path.join(closed, 'policy.json')], { encoding: 'utf8' });
  t.equal(denied.status, 1);
  t.equal(denied.stderr, `passt-repair: ${closed}/policy.json: permission denied while reading the policy; run as root, or name a policy this user may read with --policy FILE\n`);
  for (const result of [notDirectory, denied]) t.notMatch(result.stderr, /ENOTDIR|EACCES|lstat|realpath|open '/);
  const long = path.join(dir, `${'x'.repeat(300)}.json`);
  t.equal(run('--check-policy', long).stderr, `passt-repair: ${long}: the path is too long; name the policy file by a shorter path\n`);
  t.equal(run('--check-policy', '/dev/null').stderr, 'passt-repair: /dev/null: a device, not a policy file; name the policy file itself with --policy FILE\n');
  const huge = path.join(dir, 'huge.json');
  fs.writeFileSync(huge, ' '.repeat((1 << 20) + 1), { mode: 0o644 });
  t.equal(run('--check-policy', huge).stderr, `passt-repair: ${huge}: ${(1 << 20) + 1} bytes; a policy is at most ${1 << 20}: is this the right file?\n`);
});

t.test('--check-policy checks the machine too: the sandbox account exists and is not root', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = writePolicy(dir, { version: 1, sandbox: { user: 'nosuchuser' }, rules: [rule] });
  t.match(run('--check-policy', file), {
    code: 1,
    stderr: `passt-repair: ${file}:4:5: /sandbox/user: the sandbox account "nosuchuser" is not in /etc/passwd; name an existing unprivileged account, or create one (useradd --system nosuchuser)\n`,
  });
  writePolicy(dir, { version: 1, sandbox: { user: 'root' }, rules: [rule] });
  t.match(run('--check-policy', file), { code: 1, stderr: /:4:5: \/sandbox\/user: the sandbox account "root" has uid or group 0: it must be an unprivileged account; name an existing unprivileged account/ });
  writePolicy(dir, { version: 1, sandbox: { user: 'nobody' }, rules: [rule] });
  t.match(run('--check-policy', file), { code: 0 });
  // Serving refuses the same policy, before connecting anywhere.
  writePolicy(dir, { version: 1, sandbox: { user: 'nosuchuser' }, rules: [rule] });
  const serving = run('--policy', file, dir);
  t.equal(serving.code, 2);
  t.match(serving.stderr, `${file}:4:5: /sandbox/user: the sandbox account "nosuchuser" is not in /etc/passwd`);
  t.notMatch(serving.stderr, /connected/);
});

t.test('--check-policy lists every problem, each line with the prefix, in the order of the file', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = writePolicy(dir, {
    version: 1,
    sandbox: { user: 'nosuchuser', seccomp: 'warn' },
    rules: [
      { name: 'a', sockets: ['/run/a/*.repair'], directories: ['/run/b'], peer: {} },
      { name: 'a', sockets: ['run/x'], peer: { sameowner: true } },
    ],
  });
  for (const format of ['text', 'json']) {
    const result = run('--log-format', format, '--check-policy', file);
    t.equal(result.code, 1);
    const lines = result.stderr.trimEnd().split('\n');
    const messages = format === 'text' ? lines : lines.map((line) => (JSON.parse(line) as { message: string }).message);
    if (format === 'text') t.ok(lines.every((line) => line.startsWith('passt-repair: ')), 'every line carries the prefix');
    t.same(
      messages.map((line) => line.replace(/^passt-repair: /, '').replace(`${file}:`, '')),
      [
        '4:5: /sandbox/user: the sandbox account "nosuchuser" is not in /etc/passwd; name an existing unprivileged account, or create one (useradd --system nosuchuser)',
        '5:5: /sandbox/seccomp: expected one of "kill", "log", found "warn"',
        '14:9: /rules/0/directories/0: no "sockets" pattern of rule "a" can match a socket NAME.repair in a directory "/run/b" matches, so the helper would wait there and refuse what it finds; add a "sockets" pattern such as "/run/b/*.repair"',
        '19:7: /rules/1/name: a rule named "a" exists already (line 9); rename one of them: names must be unique',
        '21:9: /rules/1/sockets/0: "run/x" is relative; patterns are absolute paths: write "/run/x"',
        '24:9: /rules/1/peer/sameowner: unknown key "sameowner"; did you mean "sameOwner"?',
      ],
      format,
    );
  }
});

t.test('telemetry: a DSN needs @sentry/node installed, and a policy owned by root', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sentry = { telemetry: { sentry: { dsn: 'https://abc@sentry.invalid/1' } } };
  const file = writePolicy(dir, { version: 1, ...sentry, rules: [rule] });
  t.match(run('--check-policy', file), { code: 0 }, 'this checkout has @sentry/node');
  // An installation without the optional package: the helper's files alone,
  // copied where no node_modules is above them, run by the same node.
  const install = path.join(dir, 'install');
  for (const part of ['dist/src', 'build/Release/passt_repair.node', 'package.json', 'policy', 'seccomp'])
    fs.cpSync(path.join(ROOT, part), path.join(install, part), { recursive: true });
  let above = install;
  while (above !== path.dirname(above)) {
    above = path.dirname(above);
    t.notOk(fs.existsSync(path.join(above, 'node_modules')), `no node_modules in ${above}`);
  }
  const result = spawnSync(process.execPath, [path.join(install, 'dist/src/main.js'), '--check-policy', file], { encoding: 'utf8' });
  const sentryVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> }).optionalDependencies['@sentry/node'];
  t.equal(result.status, 1);
  t.equal(
    result.stderr,
    `passt-repair: ${file}:4:5: /telemetry/sentry: reporting to Sentry needs the optional package @sentry/node, which is not installed; install it with "npm install --omit=dev --prefix ${install} @sentry/node@${sentryVersion}", or remove "sentry"\n`,
  );
  fs.chownSync(file, 65534, 65534);
  fs.chownSync(dir, 65534, 65534);
  const owned = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', HELPER, '--check-policy', file], { encoding: 'utf8' });
  t.equal(owned.stderr, `passt-repair: ${file}:3:3: /telemetry: honoured only in a policy owned by root, and this one is owned by uid 65534; remove "telemetry" or have root own the file\n`);
  fs.chownSync(dir, 0, 0);
});

t.test('a bad policy stops the helper with exit 2 before it connects anywhere', async (t) => {
  const dir = temporaryDirectory();
  const file = writePolicy(dir, { version: 1, rules: [{ ...rule, socket: ['/x'] }] });
  const result = run('--policy', file, dir);
  t.equal(result.code, 2);
  t.match(result.stderr, `${file}:`);
  t.notMatch(result.stderr, /try "passt-repair --help"/);
  t.match(run('--policy', path.join(dir, 'none.json'), dir), { code: 2, stderr: /none\.json: no policy file here; install one with "passt-repair-install-policy"/ });
});

t.test('--explain says which rule allows a path, or why none does', async (t) => {
  const dir = temporaryDirectory();
  const sub = path.join(dir, 'passt');
  fs.mkdirSync(sub);
  const file = writePolicy(dir, {
    version: 1,
    rules: [
      { name: 'sockets-only', sockets: [`${dir}/*.repair`], peer: { uids: [107] } },
      { name: 'waiting', sockets: [`${sub}/*.repair`], directories: [sub], peer: { sameOwner: false } },
    ],
  });
  const socketCase = run('--policy', file, '--explain', `${dir}/a.repair`);
  t.equal(socketCase.code, 0);
  t.equal(
    socketCase.stdout,
    [
      `${dir} exists; a.repair does not exist yet: matched as ${dir}/a.repair, as a socket (end PATH with "/" to ask about a directory)`,
      `rule "sockets-only": "sockets" pattern "${dir}/*.repair" matches; it serves a peer that owns the socket, has uid 107`,
      `rule "waiting": no "sockets" pattern matches ("${sub}/*.repair")`,
      `${dir}/a.repair: allowed as a socket by rule "sockets-only" of ${file}`,
      '',
    ].join('\n'),
  );
  fs.symlinkSync(sub, path.join(dir, 'short'));
  const directoryCase = run('--policy', file, '--explain', path.join(dir, 'short'));
  t.equal(directoryCase.code, 0);
  t.match(directoryCase.stdout, `${dir}/short resolves to ${sub}\n`);
  t.match(directoryCase.stdout, `rule "sockets-only": no "directories" pattern matches (it has none)\n`);
  t.match(directoryCase.stdout, `rule "waiting": "directories" pattern "${sub}" matches; it serves any peer\n`);
  const refused = run('--policy', file, '--explain', dir);
  t.equal(refused.code, 1);
  t.match(refused.stdout, `${dir}: no rule of ${file} allows it as a directory\n`);
});
