// SIGINT / SIGTERM / SIGHUP: remove temporaries, then exit (interrupt.h).
#include "qforge/base/interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "qforge/base/error.h"
#include "qforge/base/file.h"

namespace qforge {
namespace {

int g_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  (void)!::write(g_pipe[1], &b, 1);
  errno = saved;
}

void WriteAll(const std::string& s) {
  const char* p = s.data();
  size_t n = s.size();
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void Watch() {
  unsigned char b = 0;
  while (true) {
    const ssize_t n = ::read(g_pipe[0], &b, 1);
    if (n == 1) break;
    if (n < 0 && errno == EINTR) continue;
    return;  // pipe closed: nothing to watch
  }
  const int sig = b;
  const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
  const auto removed = RemoveAllTemporariesForExit();
  std::string msg = std::string("\ninterrupted by ") + name + ": ";
  if (removed.empty()) {
    msg += "no temporary files to remove";
  } else {
    msg += "removed " + std::to_string(removed.size()) + " temporary path(s):";
    for (const auto& p : removed) msg += " '" + p.string() + "'";
  }
  msg += "; completed outputs are untouched\n";
  WriteAll(msg);
  ::_exit(128 + sig);
}

}  // namespace

void InstallInterruptCleanup() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  QF_CHECK(::pipe2(g_pipe, O_CLOEXEC) == 0, "cannot create the interrupt pipe");
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::thread(Watch).detach();
}

}  // namespace qforge
