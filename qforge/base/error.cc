// Out-of-line failure path of QF_ASSERT.
#include "qforge/base/error.h"

#include <cstdio>
#include <cstdlib>

namespace qforge::detail {

void AssertFail(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "qforge internal error: %s:%d: assertion `%s` failed%s%s\n", file, line, expr,
               msg.empty() ? "" : ": ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace qforge::detail
