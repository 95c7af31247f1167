// Named crash points for crash-safety tests: a test makes the process die (SIGKILL) at the n-th time it
// passes a named point, then checks that what is on disk is still consistent.
//
// With QF_TEST_KILL_AT=<event>:<n>[:<signal>] in the environment, the n-th (1-based) KillPoint(event) of
// the process raises SIGKILL, or the named signal (INT, TERM, HUP: the thread then waits there for the
// interrupt handler to exit the process; STOP: the process stops, e.g. while it holds a lock). The variable is read once; without it a kill point costs one branch. An in-process handler
// (SetKillPointHandler, for tests that throw instead of dying) is called first when set. Embedders that must
// never die on an environment variable (the Python module) call DisableKillPoints() at start-up.
#pragma once

#include <functional>
#include <string_view>

namespace qforge {

// `layer` is informational (the decoder layer being written, -1 if none), passed to the handler.
void KillPoint(std::string_view event, int layer = -1);
void SetKillPointHandler(std::function<void(std::string_view event, int layer)> handler);
void DisableKillPoints();

}  // namespace qforge
