// SPDX-License-Identifier: GPL-2.0-or-later
// Path patterns, matched against paths with every symlink resolved.
//
// `*` matches any run of characters and `?` any one character, neither ever
// crossing "/"; `**` as a whole segment matches zero or more whole segments.
// Nothing else is special: no brackets, braces or escapes an auditor would
// have to think about. The schema has already refused relative patterns,
// ".", ".." and empty segments, and "**" inside a segment.
//
// Matching never backtracks: a path an attacker names (a socket planted in a
// watched directory, a path given to --explain) costs at most time
// proportional to the pattern's length times the path's, however close it
// comes to matching. Paths are matched segment by segment; `**` is an
// automaton state that stays put on any non-empty segment, and the set of
// live states advances once per path segment (at most one state per pattern
// segment). Within a segment, `*` and `?` are matched by globSegment below.

export type PathMatcher = (path: string) => boolean;

/** One pattern segment: `**`, text with `*` or `?`, or literal text. */
type Segment = { kind: 'any-segments' } | { kind: 'glob'; characters: readonly string[] } | { kind: 'literal'; text: string };

function compileSegment(source: string): Segment {
  if (source === '**') return { kind: 'any-segments' };
  // Characters are code points, as in a path name: `?` matches one, even outside the BMP.
  if (source.includes('*') || source.includes('?')) return { kind: 'glob', characters: Array.from(source) };
  return { kind: 'literal', text: source };
}

/**
 * Whether `name` (a path segment's code points) matches `glob`, where `*`
 * matches any run and `?` any one code point. Greedy, remembering only the
 * last `*`: when a later literal fails, that `*` takes one more character
 * and matching resumes just after it. An earlier `*` never needs to be
 * revisited (whatever the later one can absorb it could too), so this is at
 * most glob length × name length steps, with no recursion.
 */
function globSegment(glob: readonly string[], name: readonly string[]): boolean {
  let g = 0;
  let n = 0;
  let star = -1; // index in glob of the last `*` seen
  let resume = 0; // where in name that `*`'s run currently ends
  while (n < name.length) {
    if (g < glob.length && (glob[g] === '?' || (glob[g] !== '*' && glob[g] === name[n]))) {
      g++;
      n++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = n;
    } else if (star >= 0) {
      g = star + 1;
      n = ++resume;
    } else return false;
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

function segmentMatches(segment: Segment, name: string, characters: readonly string[]): boolean {
  switch (segment.kind) {
    case 'literal':
      return segment.text === name;
    case 'glob':
      return globSegment(segment.characters, characters);
    case 'any-segments':
      return name !== '';
  }
}

/** A `**` may match zero segments: whoever reaches it also reaches the next one. */
function skipEmptyAnySegments(segments: readonly Segment[], states: Uint8Array): Uint8Array {
  for (let i = 0; i < segments.length; i++) if (states[i] === 1 && segments[i]!.kind === 'any-segments') states[i + 1] = 1;
  return states;
}

export function compilePattern(pattern: string): PathMatcher {
  const segments = pattern.slice(1).split('/').map(compileSegment);
  const end = segments.length;
  return (path) => {
    if (!path.startsWith('/')) return false;
    // live[i]: the path read so far matches the pattern's first i segments.
    let live: Uint8Array = new Uint8Array(end + 1);
    live[0] = 1;
    skipEmptyAnySegments(segments, live);
    for (const name of path.slice(1).split('/')) {
      const characters = Array.from(name);
      const next = new Uint8Array(end + 1);
      let any = false;
      for (let i = 0; i < end; i++) {
        if (live[i] !== 1) continue;
        const segment = segments[i]!;
        if (!segmentMatches(segment, name, characters)) continue;
        next[segment.kind === 'any-segments' ? i : i + 1] = 1;
        any = true;
      }
      if (!any) return false;
      live = skipEmptyAnySegments(segments, next);
    }
    return live[end] === 1;
  };
}
