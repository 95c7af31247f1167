// FakeQuantHooks on the CPU backend (SIMD kernels) equal the scalar reference at every hook of a real
// model's forward, on the very input each hook saw: NVFP4 inputs with a global amax below the data's max
// (saturating blocks, as on unseen text) and an FP8 KV cache.
#include "qforge/forward/fake_quant_hooks.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/support/checked_fake_quant.h"

namespace qforge {
namespace {

const std::filesystem::path kModels = std::filesystem::path(QF_SHARED_DIR) / "data" / "models";

TEST(FakeQuantHooks, CpuKernelsEqualTheReferenceAtEveryHook) {
  auto fm = ForwardModel::Load(kModels / "llama-dense-26M");
  std::vector<int32_t> ids(2 * 64);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 3) % 8000);
  for (float factor : {1.0f, 0.75f}) {
    const ActivationQuantTable table = testing_support::Nvfp4Table(*fm, ids, 2, 64, factor);
    testing_support::CheckedFakeQuant checked(table);
    (void)fm->Forward(ids, 2, 64, &checked);
    EXPECT_GT(checked.calls, 40);
    for (const auto& m : checked.mismatches) ADD_FAILURE() << "amax x" << factor << ": " << m;
  }
}

}  // namespace
}  // namespace qforge
