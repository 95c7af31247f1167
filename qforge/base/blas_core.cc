// OpenBLAS's kernel choice (blas_core.h).
#include "qforge/base/blas_core.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace qforge {

namespace {

bool HasAvx() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx");
#else
  return false;
#endif
}

bool HasAvx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

}  // namespace

const char* OpenBlasCoreOverride(const char* current) {
  if (current == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
  const bool prescott = std::strcmp(current, "Prescott") == 0;
  // The AVX2 cores OpenBLAS gives AVX-512 CPUs it does not know as such (AMD Zen 4 and 5 run "Haswell" or
  // "Zen"): SkylakeX's kernels are faster there, and their GEMM gives each row the same result whatever the
  // number of rows, which the Haswell kernels do not (a batch run in parts would not equal it run whole).
  const bool avx2_core = std::strcmp(current, "Haswell") == 0 || std::strcmp(current, "Zen") == 0;
  if (!prescott && !avx2_core) return nullptr;
  if (HasAvx512()) return "SkylakeX";
#if defined(__x86_64__)
  if (prescott && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
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

const char* BatchInvariantOpenBlasCore(const char* current) {
  if (HasAvx512()) {
    for (const char* family : {"SkylakeX", "Cooperlake", "SapphireRapids"}) {
      if (current != nullptr && std::strcmp(current, family) == 0) return current;
    }
    return "SkylakeX";
  }
  return HasAvx() ? "Sandybridge" : nullptr;
}

void ReexecForTestBlasCore(char** argv, const char* current) {
  const char* keep = std::getenv("QF_TEST_KEEP_BLAS_CORE");
  if (keep != nullptr && std::strcmp(keep, "0") != 0) {
    ReexecForOpenBlasCore(argv, current);
    return;
  }
  const char* core = BatchInvariantOpenBlasCore(current);
  if (core == nullptr || argv == nullptr || argv[0] == nullptr) return;
  if (current != nullptr && std::strcmp(current, core) == 0) return;
  // Once only: a second run that still has another core keeps it.
  if (std::getenv("QF_TEST_BLAS_REEXEC") != nullptr) return;
  if (::setenv("OPENBLAS_CORETYPE", core, /*overwrite=*/1) != 0) return;
  if (::setenv("QF_TEST_BLAS_REEXEC", "1", /*overwrite=*/1) != 0) return;
  ::execv("/proc/self/exe", argv);
}

}  // namespace qforge
