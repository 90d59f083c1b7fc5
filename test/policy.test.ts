import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HELPER, ROOT, writePolicy } from './passt-double/passt-double';
import { loadPolicy, PolicyError } from '../src/policy';
import { parsePolicy } from '../src/policy/load';
import { compilePattern } from '../src/policy/pattern';
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
  t.same(policy.sandbox, { user: 'nobody', seccomp: 'kill' });
  t.same(policy.rules[0]!.peer, { sameOwner: true, uids: undefined, gids: undefined });
  t.same(policy.rules[0]!.directories, []);
  const full = parsePolicy('p.json', JSON.stringify({ version: 1, sandbox: { user: 'passt-repair', seccomp: 'log' }, rules: [{ ...rule, peer: { sameOwner: false, uids: [1], gids: [2] } }] }));
  t.same(full.sandbox, { user: 'passt-repair', seccomp: 'log' });
  t.same(full.rules[0]!.peer, { sameOwner: false, uids: [1], gids: [2] });
});

t.test('syntax errors are reported at their line and column', async (t) => {
  t.equal(refusal('{\n  "version": 1,\n}'), 'p.json:3:1: invalid JSON: expected a key in double quotes, found "}"');
  t.equal(refusal('{"version": 1,\n "rules": [] } x'), 'p.json:2:16: invalid JSON: expected the end of the file, found "x"');
  t.equal(refusal('{"version": 01}'), 'p.json:1:14: invalid JSON: expected "}", found "1"');
  t.equal(refusal(''), 'p.json:1:1: invalid JSON: expected a value, found the end of the file');
  t.equal(refusal('{"version": 1, "rules": [], "version": 1}'), 'p.json:1:29: invalid JSON: duplicate key "version"');
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
      'p.json:2:3: /version: expected 1',
      'p.json:3:16: /sandbox/seccomp: expected one of "kill", "log"',
      'p.json:3:35: /sandbox/user: must NOT have fewer than 1 characters',
      'p.json:3:35: /sandbox/user: expected a string matching ^[a-z_][a-z0-9_.-]*[$]?$',
      'p.json:5:60: /rules/0/peer/sameowner: unknown key "sameowner"',
      'p.json:5:88: /rules/0/peer/uids/0: must be >= 0',
      'p.json:6:20: /rules/1/sockets: must NOT have fewer than 1 items',
      'p.json:6:45: /rules/1/peer/gids: must NOT have duplicate items (items ## 1 and 0 are identical)',
      'p.json:6:63: /rules/1/idle: unknown key "idle"',
      'p.json:7:5: /rules/2: missing the required key "sockets"',
      'p.json:7:5: /rules/2: missing the required key "peer"',
    ].join('\n'),
  );
  t.equal(refusal('[]'), 'p.json:1:1: /: expected a(n) object');
  t.equal(refusal('{"version": 1}'), 'p.json:1:1: /: missing the required key "rules"');
  t.equal(refusal('{"version": 1, "rules": [{"name": "x", "sockets": ["/a"], "peer": {}}, {"name": "x", "sockets": ["/b"], "peer": {}}]}'), 'p.json:1:73: /rules/1/name: a rule named "x" exists already; names must be unique');
  t.equal(refusal('{"version": 1, "__proto__": {}, "rules": []}'), 'p.json:1:16: /__proto__: unknown key "__proto__"');
});

t.test('patterns: relative, ".", "..", empty segments, trailing "/" and "**" inside a segment are refused', async (t) => {
  for (const pattern of ['run/x', './x', '/run/../x', '/run/./x', '/run//x', '/run/', '/', '', '/run/a**', '/run/**b', '/***', '/..', '/run/..']) {
    t.match(refusal(JSON.stringify({ version: 1, rules: [{ ...rule, sockets: [pattern] }] })), /\/rules\/0\/sockets\/0: expected an absolute path pattern/, JSON.stringify(pattern));
  }
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
  t.throws(() => loadPolicy(file), { message: `${file}: owned by uid 65534; a policy and every directory above it must be owned by root` });
  fs.chownSync(file, 0, 0);
  for (const mode of [0o664, 0o646, 0o666]) {
    fs.chmodSync(file, mode);
    t.throws(() => loadPolicy(file), { message: `${file}: mode 0${mode.toString(8)} is writable by group or others; a policy and every directory above it must not be` });
  }
  fs.chmodSync(file, 0o600);
  t.doesNotThrow(() => loadPolicy(file));

  const nested = path.join(dir, 'etc');
  fs.mkdirSync(nested, { mode: 0o755 });
  const inner = writePolicy(nested, good);
  fs.chmodSync(nested, 0o777);
  t.throws(() => loadPolicy(inner), { message: `${nested}: mode 0777 is writable by group or others; a policy and every directory above it must not be` });
  fs.chmodSync(nested, 0o1777);
  t.doesNotThrow(() => loadPolicy(inner), 'a sticky directory is accepted');
  fs.chmodSync(nested, 0o755);
  fs.chownSync(nested, 65534, 65534);
  t.throws(() => loadPolicy(inner), { message: `${nested}: owned by uid 65534; a policy and every directory above it must be owned by root` });
  fs.chownSync(nested, 0, 0);

  const link = path.join(dir, 'link.json');
  fs.symlinkSync(file, link);
  t.throws(() => loadPolicy(link), { message: `${link}: reached through a symlink (to ${file}); name the policy file by its real path` });
  t.throws(() => loadPolicy(dir), { message: `${dir}: not a regular file` });
  t.throws(() => loadPolicy(path.join(dir, 'missing.json')), { message: /missing\.json: cannot read the policy: no such file or directory/ });
  const fifo = path.join(dir, 'fifo.json');
  spawnSync('mkfifo', ['-m', '0644', fifo]);
  t.throws(() => loadPolicy(fifo), { message: `${fifo}: not a regular file` });
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
  t.match(run('--check-policy', file), { code: 1, stdout: '', stderr: `passt-repair: ${file}:1:29: /extra: unknown key "extra"\n` });
  t.match(run('--check-policy', path.join(dir, 'none.json')), { code: 1, stderr: /cannot read the policy/ });
});

t.test('a bad policy stops the helper with exit 2 before it connects anywhere', async (t) => {
  const dir = temporaryDirectory();
  const file = writePolicy(dir, { version: 1, rules: [{ ...rule, socket: ['/x'] }] });
  const result = run('--policy', file, dir);
  t.equal(result.code, 2);
  t.match(result.stderr, `${file}:`);
  t.notMatch(result.stderr, /try "passt-repair --help"/);
  t.match(run('--policy', path.join(dir, 'none.json'), dir), { code: 2, stderr: /none\.json: cannot read the policy/ });
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
