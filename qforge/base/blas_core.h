// OpenBLAS's kernel choice. Debian's OpenBLAS (0.3.21 in bookworm) picks its kernels from the CPU model and
// falls back to its Prescott (SSE3) kernels on models its table does not know (newer Xeons, and the generic
// model many virtual machines report): its GEMMs then run about 4x slower (qforge quantize with GPTQ on
// llama-dense-26M, 2 cores: 43 s instead of 12 s). The choice is made when the library loads, from the
// environment variable OPENBLAS_CORETYPE, so a program fixes it by running itself again with it set.
#pragma once

namespace qforge {

// The core to force, given the core OpenBLAS runs (`current`, openblas_get_corename()): "SkylakeX" where the
// CPU has AVX-512 F/BW/DQ/VL and OpenBLAS runs its Prescott fallback or an AVX2 core ("Haswell", "Zen": AMD's
// AVX-512 CPUs), "Haswell" for the Prescott fallback where the CPU has AVX2 and FMA; nullptr otherwise, or when
// OPENBLAS_CORETYPE is set already (the user's choice wins). Besides speed (the Prescott kernels are about 4x
// slower; SkylakeX's 1.1-1.3x faster than Haswell's on Zen 4), SkylakeX's SGEMM gives a row the same result
// whatever the rows beside it in the call (above its small-matrix sizes), which the Haswell kernels do not.
const char* OpenBlasCoreOverride(const char* current);

// At the start of main: when OpenBlasCoreOverride(current) names a core, runs this program again (execv of
// /proc/self/exe with the same arguments) with OPENBLAS_CORETYPE set to it. Returns when there is nothing to
// do, or when the exec failed (the program then goes on with the slow kernels).
void ReexecForOpenBlasCore(char** argv, const char* current);

// The core the test binaries run: one whose SGEMM gives a row the same bits whatever the number of rows in the
// call and the row's place among them, for the shapes the tests use, so that tests can hold a batch run in
// parts to the same batch run whole, bit for bit. "SkylakeX" where the CPU has AVX-512 (its small-matrix
// kernels, taken below about 64^3 multiply-adds per call, are not; the tests' calls are larger), "Sandybridge"
// (AVX, no FMA) where it has only AVX, nullptr on older CPUs. The AVX2 kernels ("Haswell", "Zen") are not
// batch-invariant: a row's result depends on its place modulo 12 in the call. `current` is the core OpenBLAS
// runs; the SkylakeX family (Cooperlake, SapphireRapids) counts as SkylakeX.
const char* BatchInvariantOpenBlasCore(const char* current);

// The main of the test binaries: runs the program again with OPENBLAS_CORETYPE set to
// BatchInvariantOpenBlasCore(current) when OpenBLAS runs another core, overriding the environment's setting
// (tests pin their kernels; QF_TEST_KEEP_BLAS_CORE=1 keeps the environment's, as ReexecForOpenBlasCore does).
// Runs again at most once: when the library did not take the setting, it goes on with what it has.
void ReexecForTestBlasCore(char** argv, const char* current);

}  // namespace qforge
