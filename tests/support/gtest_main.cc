// The main of every test binary: GoogleTest's, after running again with OpenBLAS's right kernels where the
// library fell back to its slowest ones (base/blas_core.h), so tests time what users get.
#include <cblas.h>
#include <gtest/gtest.h>

#include "qforge/base/blas_core.h"

int main(int argc, char** argv) {
  qforge::ReexecForOpenBlasCore(argv, openblas_get_corename());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
