// SPDX-License-Identifier: GPL-2.0-or-later
// The licence as a packager checks it: LICENSE holds the GPL version 2 text,
// package.json names the same licence, and every source file of the product,
// its tests and its packaging says so in an SPDX header near its top.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './passt-double/passt-double';

const SPDX = 'SPDX-License-Identifier: GPL-2.0-or-later';
/** How far down a file the header may be: after a shebang, a vim line or a comment's opening. */
const HEADER_LINES = 5;
/** Folders whose every file is source. */
const SOURCE_FOLDERS = ['src/', 'native/', 'bin/', 'policy/', 'seccomp/', 'test/', 'contrib/', 'scripts/', 'demo/', '.ci/'];
/** Source files at the top of the tree. */
const TOP_LEVEL_SOURCES = ['binding.gyp', 'run', 'passt-repair.1'];
/** JSON has no comments (policy files and schemas), and prose is not source. */
const NOT_SOURCE = /\.(json|md)$/;

function trackedFiles(): string[] {
  // Committed and new files alike; what .gitignore names (builds) is left out.
  const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  return listed.stdout.split('\0').filter((file) => file !== '' && fs.existsSync(path.join(ROOT, file)));
}

t.test('LICENSE is the text of the GNU GPL version 2, as package.json says', async (t) => {
  const license = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8');
  t.match(license, /^\s+GNU GENERAL PUBLIC LICENSE\n\s+Version 2, June 1991\n/, 'the GPL version 2 heading');
  t.match(license, /TERMS AND CONDITIONS FOR COPYING, DISTRIBUTION AND MODIFICATION/);
  t.match(license, /END OF TERMS AND CONDITIONS/);
  t.match(license, /How to Apply These Terms to Your New Programs/, 'the whole text, appendix included');
  // Debian ships the same text: where it does, the two are identical.
  const debian = '/usr/share/common-licenses/GPL-2';
  if (fs.existsSync(debian)) t.equal(license, fs.readFileSync(debian, 'utf8'), `identical to ${debian}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { license: string; files: string[] };
  t.equal(manifest.license, 'GPL-2.0-or-later');
  t.ok(manifest.files.includes('LICENSE'), 'LICENSE is packed');
});

t.test(`every source file carries "${SPDX}" in its first ${HEADER_LINES} lines`, async (t) => {
  const sources = trackedFiles().filter(
    (file) =>
      (TOP_LEVEL_SOURCES.includes(file) || SOURCE_FOLDERS.some((folder) => file.startsWith(folder))) &&
      !NOT_SOURCE.test(file) &&
      // A symbolic link (bin/passt-repair, to the built launcher) is no source of its own.
      !fs.lstatSync(path.join(ROOT, file)).isSymbolicLink(),
  );
  for (const known of ['src/main.ts', 'native/launcher.c', 'native/errors.h', 'bin/passt-repair-install-policy', 'seccomp/allowlist.policy', 'test/lib.ts', 'run'])
    t.ok(sources.includes(known), `${known} is among the files checked (the listing works)`);
  const missing = sources.filter((file) => {
    const head = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n', HEADER_LINES);
    return !head.some((line) => line.includes(SPDX));
  });
  t.same(missing, [], `${sources.length} source files checked; these lack the header`);
});
