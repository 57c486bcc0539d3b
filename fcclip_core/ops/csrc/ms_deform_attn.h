// Host entry points of the deformable-attention kernels (CPU always, CUDA when built WITH_CUDA).
// Inputs reach them checked and contiguous (see bindings.cpp); shapes follow fcclip_core.ops:
//   value [N, S, M, D], spatial_shapes [L, 2] int64, level_start_index [L] int64,
//   sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P] -> output [N, Lq, M*D].
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace fcclip {
namespace msda {

// Problem sizes, read once from the (checked) input tensors and passed to every kernel.
struct Sizes {
  int64_t batch, pixels, heads, channels, queries, levels, points;
};

inline Sizes sizes_of(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                            const at::Tensor& level_start_index,
                                                            const at::Tensor& sampling_locations,
                                                            const at::Tensor& attention_weights,
                                                            const at::Tensor& grad_output);

#ifdef WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                             const at::Tensor& level_start_index,
                                                             const at::Tensor& sampling_locations,
                                                             const at::Tensor& attention_weights,
                                                             const at::Tensor& grad_output);
#endif

}  // namespace msda
}  // namespace fcclip
