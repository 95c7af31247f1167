// OpenBLAS's kernel choice (blas_core.h).
#include "qforge/base/blas_core.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace qforge {

const char* OpenBlasCoreOverride(const char* current) {
  if (current == nullptr || std::strcmp(current, "Prescott") != 0) return nullptr;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

void ReexecForOpenBlasCore(char** argv, const char* current) {
  const char* core = OpenBlasCoreOverride(current);
  if (core == nullptr || argv == nullptr || argv[0] == nullptr) return;
  if (::setenv("OPENBLAS_CORETYPE", core, /*overwrite=*/0) != 0) return;
  ::execv("/proc/self/exe", argv);
  // Only on failure: go on as we are (the variable set now cannot change the loaded library).
}

}  // namespace qforge
