// SPDX-License-Identifier: GPL-2.0-or-later
import type { Native } from './native.d';

// Built from native/ by node-gyp (npm run build); the npm package ships it prebuilt.
export const native: Native = require('../../build/Release/passt_repair.node');
