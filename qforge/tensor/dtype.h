// Storage dtypes of tensors on disk and in memory, with their safetensors names (one traits table).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qforge {

// Identifiers reach disk through their names only; the enum order is free to grow (append-only anyway).
enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kF8E5M2, kI8, kU8, kI16, kI32, kI64, kF64, kBool };

struct DTypeTraits {
  DType dtype;
  std::string_view safetensors_name;  // "F32", "BF16", "F8_E4M3", ...
  std::string_view torch_name;        // "float32", "bfloat16", "float8_e4m3fn", ... (HF config dtype)
  size_t size;                        // bytes per element
  bool is_float;                      // a floating type qforge can convert to f32
};

inline constexpr DTypeTraits kDTypeTable[] = {
    {DType::kF32, "F32", "float32", 4, true},        {DType::kF16, "F16", "float16", 2, true},
    {DType::kBF16, "BF16", "bfloat16", 2, true},     {DType::kF8E4M3, "F8_E4M3", "float8_e4m3fn", 1, true},
    {DType::kF8E5M2, "F8_E5M2", "float8_e5m2", 1, true}, {DType::kI8, "I8", "int8", 1, false},
    {DType::kU8, "U8", "uint8", 1, false},           {DType::kI16, "I16", "int16", 2, false},
    {DType::kI32, "I32", "int32", 4, false},         {DType::kI64, "I64", "int64", 8, false},
    {DType::kF64, "F64", "float64", 8, true},        {DType::kBool, "BOOL", "bool", 1, false},
};

constexpr const DTypeTraits& Traits(DType d) { return kDTypeTable[static_cast<size_t>(d)]; }
constexpr size_t DTypeSize(DType d) { return Traits(d).size; }
constexpr std::string_view DTypeName(DType d) { return Traits(d).safetensors_name; }
constexpr bool IsFloat(DType d) { return Traits(d).is_float; }

// Parses a safetensors dtype name ("BF16"); nullopt if unknown.
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);
// Parses a torch dtype name ("bfloat16", "float16", "float32"; also "torch.bfloat16"); nullopt if unknown.
std::optional<DType> DTypeFromTorchName(std::string_view name);

}  // namespace qforge
