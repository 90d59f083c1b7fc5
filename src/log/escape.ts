// SPDX-License-Identifier: GPL-2.0-or-later
// What keeps a text audit line one line: every character that a terminal, a
// log collector or a reader could take for the end of a line or a control
// sequence is written as a visible escape. The values a message carries (a
// socket's name in a watched directory, the peer's executable name) are
// chosen by whoever made them: unescaped, a name such as
// "0\npasst-repair: end: ..." would add a well-formed line of its own.

/** C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the backslash that starts an escape. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\\]/g;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

function escapeOne(character: string): string {
  const code = character.charCodeAt(0);
  return NAMED[character] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`);
}

/**
 * `text` with every unsafe character escaped (\n, \r, \t, \\, \xHH, \u2028,
 * \u2029): the result holds no line break of any kind, and the backslash
 * being escaped too, an escape in it is never ambiguous.
 */
export function escapeLine(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}
