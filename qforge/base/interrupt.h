// Clean exit on SIGINT / SIGTERM / SIGHUP for command-line programs.
//
// A signal handler only writes the signal number to a pipe (async-signal-safe, whichever thread receives it:
// OpenMP and OpenBLAS workers included); a watcher thread reads it, removes every registered temporary file
// and directory (base/file.h: half-written exports, layer directories, activation spills), prints what it
// removed and exits with status 128 + signal. Completed work (committed files, a layerwise checkpoint's
// finished layers) is kept, so a later run resumes. Nothing is installed unless a program asks: libraries
// and embedders (the Python module) keep their own signal handling.
#pragma once

namespace qforge {

// Installs the handlers and starts the watcher thread. Call once, early in main(). Idempotent.
void InstallInterruptCleanup();

}  // namespace qforge
