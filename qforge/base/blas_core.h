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
// whatever the number of rows in the call, which the Haswell kernels do not.
const char* OpenBlasCoreOverride(const char* current);

// At the start of main: when OpenBlasCoreOverride(current) names a core, runs this program again (execv of
// /proc/self/exe with the same arguments) with OPENBLAS_CORETYPE set to it. Returns when there is nothing to
// do, or when the exec failed (the program then goes on with the slow kernels).
void ReexecForOpenBlasCore(char** argv, const char* current);

}  // namespace qforge
