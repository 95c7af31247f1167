// Kill points for crash-safety tests (kill_point.h).
#include "qforge/base/kill_point.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "qforge/base/strings.h"

namespace qforge {
namespace {

struct KillState {
  std::mutex mu;
  std::function<void(std::string_view, int)> handler;
  std::map<std::string, int, std::less<>> counts;
  bool disabled = false;
};

KillState& State() {
  static KillState s;
  return s;
}

}  // namespace

void SetKillPointHandler(std::function<void(std::string_view event, int layer)> handler) {
  std::lock_guard lock(State().mu);
  State().handler = std::move(handler);
}

void DisableKillPoints() {
  std::lock_guard lock(State().mu);
  State().disabled = true;
}

void KillPoint(std::string_view event, int layer) {
  static const char* spec = std::getenv("QF_TEST_KILL_AT");
  KillState& s = State();
  std::function<void(std::string_view, int)> handler;
  {
    std::lock_guard lock(s.mu);
    if (s.disabled) return;
    handler = s.handler;
  }
  if (handler) handler(event, layer);
  if (spec == nullptr) return;
  // <event>:<n>[:<signal>]
  const std::vector<std::string> parts = Split(spec, ':');
  if (parts.size() < 2 || parts[0] != event) return;
  int sig = SIGKILL;
  if (parts.size() >= 3) {
    static const std::pair<const char*, int> kNames[] = {{"KILL", SIGKILL}, {"INT", SIGINT}, {"TERM", SIGTERM},
                                                         {"HUP", SIGHUP}, {"STOP", SIGSTOP}};
    for (const auto& [name, value] : kNames) {
      if (parts[2] == name) sig = value;
    }
  }
  {
    std::lock_guard lock(s.mu);
    const int n = ++s.counts[std::string(event)];
    if (n != std::atoi(parts[1].c_str())) return;
  }
  std::raise(sig);
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
    // Stay here, as a thread busy writing would, while the interrupt handler (base/interrupt.h) cleans up and
    // exits: the test then sees exactly what an interrupt at this point leaves behind.
    while (true) ::pause();
  }
}

}  // namespace qforge
