// The main of every test binary: GoogleTest's, after running again with OpenBLAS kernels that give a row the
// same bits whatever the rows beside it (base/blas_core.h), whatever OPENBLAS_CORETYPE the environment sets:
// tests hold batches run in parts to the same batches run whole, bit for bit.
#include <cblas.h>
#include <gtest/gtest.h>

#include "qforge/base/blas_core.h"

int main(int argc, char** argv) {
  qforge::ReexecForTestBlasCore(argv, openblas_get_corename());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
