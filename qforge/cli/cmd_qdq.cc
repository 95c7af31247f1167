// `qforge qdq --cfg JSON IN OUT`: fake-quantizes every floating tensor of a safetensors file with one
// QuantizerAttributeConfig, amax taken from each tensor itself (max calibration over that tensor).
#include <cstdio>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/file.h"
#include "qforge/cli/command.h"
#include "qforge/config/json_util.h"
#include "qforge/config/quantizer_attribute_config.h"
#include "qforge/io/safetensors.h"
#include "qforge/numerics/qdq.h"
#include "qforge/runtime/cpu/quant_kernels.h"

namespace qforge::cli {
namespace {

struct QdqArgs {
  std::string cfg;
  std::string in;
  std::string out;
  bool overwrite = false;
};

int RunQdq(const QdqArgs& a) {
  CheckOutputFile(a.out, "OUT", a.overwrite, {a.in});
  config::Json j;
  try {
    j = config::Json::parse(a.cfg);
  } catch (const config::Json::exception& e) {
    QF_FAIL("--cfg is not valid JSON: {}", e.what());
  }
  QF_CHECK(j.is_object(), "--cfg must be a JSON object (a QuantizerAttributeConfig), got {}", config::Brief(j));
  config::ConvertExMyStrings(j);
  const QuantSpec spec = config::QuantizerAttributeConfig::FromJson(j, "--cfg").ToQuantSpec();

  auto in = SafetensorsFile::Open(a.in);
  std::vector<std::pair<std::string, Tensor>> out;
  int skipped = 0;
  for (const auto& name : in->names()) {
    const Tensor t = in->Get(name);
    if (!IsFloat(t.dtype())) {
      LogWarning("'{}': tensor '{}' has dtype {}: not a floating tensor, left out", a.in, name, DTypeName(t.dtype()));
      ++skipped;
      continue;
    }
    const Tensor x = t.ToF32();
    Tensor y = Tensor::Zeros(DType::kF32, t.shape());
    const RoundTo round_to = t.dtype() == DType::kBF16 ? RoundTo::kBF16
                             : t.dtype() == DType::kF16 ? RoundTo::kF16
                                                        : RoundTo::kF32;
    FakeQuantWithOwnAmax(spec, x.span<float>(), t.shape(), y.mutable_span<float>(), round_to, name,
                         &cpu::HostKernels());
    out.emplace_back(name, std::move(y));
  }
  WriteSafetensors(a.out, out);
  std::printf("qdq: wrote %zu tensors to %s%s\n", out.size(), a.out.c_str(),
              skipped ? " (non-floating tensors left out)" : "");
  return 0;
}

CommandRegistrar reg("qdq", "fake-quantize (quantize + dequantize) every floating tensor of a safetensors file",
                     [](CLI::App& sub) -> RunFn {
                       auto a = std::make_shared<QdqArgs>();
                       sub.add_option("--cfg", a->cfg,
                                      "QuantizerAttributeConfig as JSON, e.g. "
                                      "'{\"num_bits\": [2,1], \"block_sizes\": {\"-1\": 16, \"type\": \"dynamic\", "
                                      "\"scale_bits\": [4,3]}}'")
                           ->required();
                       sub.add_option("IN", a->in, "input .safetensors")->required();
                       sub.add_option("OUT", a->out, "output .safetensors (float32 tensors, same names/shapes)")
                           ->required();
                       sub.add_flag("--overwrite", a->overwrite, "replace OUT if it exists (never IN)");
                       return [a] { return RunQdq(*a); };
                     });

}  // namespace
}  // namespace qforge::cli
