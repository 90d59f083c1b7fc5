// Path patterns, matched against paths with every symlink resolved.
//
// `*` matches any run of characters and `?` any one character, neither ever
// crossing "/"; `**` as a whole segment matches zero or more whole segments.
// Nothing else is special: no brackets, braces or escapes an auditor would
// have to think about. The schema has already refused relative patterns,
// ".", ".." and empty segments, and "**" inside a segment.

export type PathMatcher = (path: string) => boolean;

const SEGMENT_CHARACTER = '[^/]';

function segmentExpression(segment: string): string {
  let expression = '';
  for (const c of segment) {
    if (c === '*') expression += `${SEGMENT_CHARACTER}*`;
    else if (c === '?') expression += SEGMENT_CHARACTER;
    else expression += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return expression;
}

export function compilePattern(pattern: string): PathMatcher {
  // "/a/**/b" is "/a" + (zero or more "/segment") + "/b".
  const expression = pattern
    .slice(1)
    .split('/')
    .map((segment) => (segment === '**' ? `(?:/${SEGMENT_CHARACTER}+)*` : `/${segmentExpression(segment)}`))
    .join('');
  const regex = new RegExp(`^${expression}$`, 'u');
  return (path) => regex.test(path);
}
