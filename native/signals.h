// SPDX-License-Identifier: GPL-2.0-or-later
// SIGTERM, SIGINT and SIGHUP, recorded and never acted on inside a request
// (native/signals.cc). The protocol loop reads them between requests.
#pragma once

namespace passt_repair {

// The first of the three signals received, or 0.
int PendingSignal();
// The self-pipe's read end, readable once a signal has been recorded; -1
// until CatchSignals ran.
int SignalWakeFd();

}  // namespace passt_repair
