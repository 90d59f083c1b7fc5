import type { Native } from './native.d';

// Built from native/ by node-gyp when the package is installed.
export const native: Native = require('../../build/Release/passt_repair.node');
