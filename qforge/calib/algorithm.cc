// The registry of calibration algorithms (algorithm.h).
#include "qforge/calib/algorithm.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "qforge/base/error.h"

namespace qforge {
namespace {

using Factory = std::unique_ptr<CalibAlgorithm> (*)(const config::QuantizeConfig&, const config::AlgorithmConfig&);

struct Registration {
  std::string_view method;  // config::AlgorithmTraits::method
  Factory make;
};

// One row per implemented method.
constexpr Registration kAlgorithms[] = {
    {"max", &MakeMaxAlgorithm},
    {"mse", &MakeMseAlgorithm},
    {"local_hessian", &MakeLocalHessianAlgorithm},
};

}  // namespace

std::vector<std::string_view> ImplementedCalibMethods() {
  std::vector<std::string_view> out;
  for (const auto& r : kAlgorithms) out.push_back(r.method);
  return out;
}

std::unique_ptr<CalibAlgorithm> MakeCalibAlgorithm(const config::QuantizeConfig& config,
                                                   const config::AlgorithmConfig& algo) {
  for (const auto& r : kAlgorithms) {
    if (algo.method() == r.method) return r.make(config, algo);
  }
  QF_FAIL("algorithm '{}' is not implemented yet; qforge calibrates with {} (give one with --algorithm, or use a "
          "recipe or --qformat whose algorithm is one of them)",
          algo.method(), fmt::join(ImplementedCalibMethods(), ", "));
}

}  // namespace qforge
