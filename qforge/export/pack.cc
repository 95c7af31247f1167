// Tensor/file-level packing and unpacking of weights (pack.h).
#include "qforge/export/pack.h"

#include <fmt/format.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <type_traits>
#include <utility>

#include "qforge/base/error.h"
#include "qforge/io/safetensors.h"

namespace qforge {
namespace {

Tensor BytesTensor(DType dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  Tensor t = Tensor::Zeros(dtype, shape);
  QF_ASSERT(t.nbytes() == nbytes, "packed tensor size mismatch");
  if (nbytes) std::memcpy(t.mutable_raw(), data, nbytes);
  return t;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The tensor's bytes as a V (std::vector<float> or ByteBuffer) of t.numel() elements.
template <typename V>
V CopyOut(const Tensor& t) {
  V v(static_cast<size_t>(t.numel()));
  if (!v.empty()) std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

std::string ShapeStr(const Tensor& t) { return ShapeToString(t.shape()); }

}  // namespace

DType StoredDTypeOf(StoredType t) {
  switch (t) {
    case StoredType::kF32: return DType::kF32;
    case StoredType::kE4M3: return DType::kF8E4M3;
    case StoredType::kU8: return DType::kU8;
    case StoredType::kI8: return DType::kI8;
  }
  return DType::kU8;
}

PackedTensors ToTensors(const PackedWeight& p) {
  const PackFormatTraits& t = GetTraits(p.format);
  PackedTensors out;
  out.weight = BytesTensor(StoredDTypeOf(t.weight_type), p.weight_shape, p.weight.data(), p.weight.size());
  if (t.scale_type == StoredType::kF32) {
    out.weight_scale = BytesTensor(DType::kF32, p.scale_shape, p.scale_f32.data(), p.scale_f32.size() * 4);
  } else {
    out.weight_scale = BytesTensor(StoredDTypeOf(t.scale_type), p.scale_shape, p.scale_bytes.data(), p.scale_bytes.size());
  }
  if (p.weight_scale_2) out.weight_scale_2 = Tensor::Scalar(*p.weight_scale_2);
  return out;
}

namespace {

// A tensor viewing a buffer it now owns (moved in, so no byte is copied).
template <typename V>
Tensor AdoptBuffer(DType dtype, const std::vector<int64_t>& shape, V&& buffer) {
  auto owner = std::make_shared<std::decay_t<V>>(std::forward<V>(buffer));
  const void* data = owner->data();
  Tensor t = Tensor::Borrow(dtype, shape, data, owner);
  QF_ASSERT(t.nbytes() == owner->size() * sizeof(typename std::decay_t<V>::value_type), "packed tensor size mismatch");
  return t;
}

}  // namespace

PackedTensors ToTensors(PackedWeight&& p) {
  const PackFormatTraits& t = GetTraits(p.format);
  PackedTensors out;
  out.weight = AdoptBuffer(StoredDTypeOf(t.weight_type), p.weight_shape, std::move(p.weight));
  if (t.scale_type == StoredType::kF32) {
    out.weight_scale = AdoptBuffer(DType::kF32, p.scale_shape, std::move(p.scale_f32));
  } else {
    out.weight_scale = AdoptBuffer(StoredDTypeOf(t.scale_type), p.scale_shape, std::move(p.scale_bytes));
  }
  if (p.weight_scale_2) out.weight_scale_2 = Tensor::Scalar(*p.weight_scale_2);
  return out;
}

PackedWeight FromTensors(const Tensor& weight, const Tensor& scale, const Tensor* scale_2, std::string_view what) {
  PackedWeight p;
  const DType wd = weight.dtype(), sd = scale.dtype();
  const Shape& ws = weight.shape();
  QF_CHECK(!ws.empty(), "{}: a packed weight must have rank >= 1, got shape {}", what, ShapeStr(weight));
  auto fail = [&]() {
    QF_FAIL("{}: weight {} {} with weight_scale {} {} is not a packed format qforge knows "
            "(one of: {})", what, DTypeName(wd), ShapeStr(weight), DTypeName(sd), ShapeStr(scale),
            AllPackFormatNames());
  };
  p.shape = ws;
  if (wd == DType::kF8E4M3 && sd == DType::kF32) {
    if (scale.rank() == 0) {
      p.format = PackFormat::kFp8;
    } else if (scale.rank() == 1 && weight.rank() >= 2 && scale.shape()[0] == ws[0]) {
      p.format = PackFormat::kFp8PerChannel;
    } else if (scale.rank() == weight.rank() + 2 && weight.rank() >= 2) {
      p.format = PackFormat::kFp8Block;
    } else {
      fail();
    }
  } else if (wd == DType::kF8E4M3 && sd == DType::kU8) {
    p.format = PackFormat::kMxfp8;
  } else if (wd == DType::kU8 && sd == DType::kF8E4M3) {
    p.format = PackFormat::kNvfp4;
    p.shape.back() *= 2;
    QF_CHECK(scale_2 != nullptr, "{}: an NVFP4 weight needs its weight_scale_2", what);
    QF_CHECK(scale_2->dtype() == DType::kF32 && scale_2->numel() == 1,
             "{}: weight_scale_2 must be a scalar F32 tensor, got {} {}", what, DTypeName(scale_2->dtype()),
             ShapeStr(*scale_2));
    p.weight_scale_2 = scale_2->data<float>()[0];
  } else if (wd == DType::kU8 && sd == DType::kU8) {
    p.format = PackFormat::kMxfp4;
    p.shape.back() *= 2;
  } else if (wd == DType::kU8 && sd == DType::kF32) {
    p.format = PackFormat::kInt4Awq;
    QF_CHECK(weight.rank() >= 2, "{}: an int4_awq weight must have rank >= 2, got {}", what, ShapeStr(weight));
    p.shape[p.shape.size() - 2] *= 2;
  } else if (wd == DType::kI8 && sd == DType::kF32) {
    p.format = PackFormat::kInt8;
  } else {
    fail();
  }
  p.weight = CopyOut<ByteBuffer>(weight);
  p.weight_shape = ws;
  p.scale_shape = scale.shape();
  if (sd == DType::kF32) {
    p.scale_f32 = CopyOut<std::vector<float>>(scale);
  } else {
    p.scale_bytes = CopyOut<ByteBuffer>(scale);
  }
  return p;
}

std::string WeightNameFor(std::string_view tensor_name) {
  if (EndsWith(tensor_name, ".weight")) return std::string(tensor_name);
  return std::string(tensor_name) + ".weight";
}

std::vector<std::pair<std::string, Tensor>> PackWeightTensor(PackFormat format, std::string_view tensor_name,
                                                             const Tensor& w, const PackInputs& inputs,
                                                             const HostQuantKernels* kernels) {
  QF_CHECK(IsFloat(w.dtype()) && w.dtype() != DType::kF8E4M3 && w.dtype() != DType::kF8E5M2,
           "tensor '{}' has dtype {}: pack needs a floating tensor (F32, F16, BF16 or F64)", tensor_name,
           DTypeName(w.dtype()));
  const Tensor x = w.ToF32();
  const std::string name = WeightNameFor(tensor_name);
  const PackedWeight packed =
      PackWeight(format, x.span<float>(), x.shape(), inputs, fmt::format("tensor '{}'", tensor_name), kernels);
  PackedTensors t = ToTensors(packed);
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(name, std::move(t.weight));
  out.emplace_back(name + "_scale", std::move(t.weight_scale));
  if (t.weight_scale_2) out.emplace_back(name + "_scale_2", std::move(*t.weight_scale_2));
  return out;
}

PackFileSummary PackSafetensorsFile(PackFormat format, const std::filesystem::path& in,
                                    const std::filesystem::path& out, const HostQuantKernels* kernels) {
  auto file = SafetensorsFile::Open(in);
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::set<std::string> written;
  PackFileSummary summary;
  for (const std::string& name : file->names()) {
    for (auto& [n, t] : PackWeightTensor(format, name, file->Get(name), {}, kernels)) {
      QF_CHECK(written.insert(n).second, "'{}': packing tensor '{}' would write '{}' twice (two inputs map to it)",
               in.string(), name, n);
      tensors.emplace_back(n, std::move(t));
    }
    file->Release(name);
    ++summary.packed;
  }
  WriteSafetensors(out, tensors, {{"format", "pt"}});
  return summary;
}

PackFileSummary UnpackSafetensorsFile(const std::filesystem::path& in, const std::filesystem::path& out) {
  auto file = SafetensorsFile::Open(in);
  std::set<std::string> names(file->names().begin(), file->names().end());
  std::set<std::string> consumed;
  std::vector<std::pair<std::string, Tensor>> tensors;
  PackFileSummary summary;
  for (const std::string& name : file->names()) {
    if (!EndsWith(name, ".weight_scale")) continue;
    const std::string wname = name.substr(0, name.size() - 6);  // drop "_scale"
    QF_CHECK(names.count(wname), "'{}': '{}' has no matching '{}'", in.string(), name, wname);
    const std::string s2name = name + "_2";
    std::optional<Tensor> s2;
    if (names.count(s2name)) s2 = file->Get(s2name);
    const PackedWeight p = FromTensors(file->Get(wname), file->Get(name), s2 ? &*s2 : nullptr,
                                       fmt::format("'{}': tensor '{}'", in.string(), wname));
    const std::vector<float> w = UnpackWeight(p, wname);
    tensors.emplace_back(wname, Tensor::FromF32(p.shape, w));
    consumed.insert({wname, name});
    if (s2) consumed.insert(s2name);
    ++summary.packed;
  }
  for (const std::string& name : file->names()) {
    if (consumed.count(name)) continue;
    const Tensor t = file->Get(name);
    const bool convertible = IsFloat(t.dtype()) && t.dtype() != DType::kF8E4M3 && t.dtype() != DType::kF8E5M2;
    tensors.emplace_back(name, convertible ? t.ToF32().Clone() : t.Clone());
    ++summary.passed_through;
  }
  WriteSafetensors(out, tensors, {{"format", "pt"}});
  return summary;
}

}  // namespace qforge
