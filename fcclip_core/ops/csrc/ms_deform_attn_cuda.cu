// CUDA kernels: the shared sampling math (msda_sampling.h), one channel per thread in the forward
// pass and one sampling point per thread in the backward pass. Half and bfloat16 compute in float.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

// Only c10's CUDA headers: ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers, which a
// minimal toolkit (nvcc + cudart) does not ship.

#include "ms_deform_attn.h"
#include "msda_sampling.h"

namespace fcclip {
namespace msda {
namespace {

constexpr int kThreads = 256;

// Kernels loop grid-stride, so the grid can be capped well below CUDA's limit.
unsigned int blocks_for(int64_t work) {
  return static_cast<unsigned int>(std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 20));
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t thread_count() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// One thread per output element (batch, query, head, channel): neighbouring threads read
// neighbouring channels of the same pixel, so value reads coalesce.
template <typename scalar_t>
__global__ void forward_kernel(Sizes s, const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                               const scalar_t* __restrict__ attention, scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.batch * s.queries * s.heads * s.channels;
  const int64_t samples_per_row = s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;
  for (int64_t i = global_thread(); i < total; i += thread_count()) {
    const int64_t channel = i % s.channels;
    const int64_t row = i / s.channels;  // (batch, query, head)
    const int64_t head = row % s.heads;
    const int64_t n = row / (s.queries * s.heads);
    acc_t acc = 0;
    sample_query_head<scalar_t, acc_t>(value + (n * s.pixels * s.heads + head) * s.channels + channel, pixel_stride,
                                       shapes, starts, s.levels, s.points, locations + row * samples_per_row * 2,
                                       attention + row * samples_per_row, &acc, FixedChannels<1>{});
    output[i] = static_cast<scalar_t>(acc);
  }
}

// Value gradients of different queries land on the same pixels, hence atomics (in acc_t precision).
template <typename acc_t>
struct AtomicAddToHead {
  acc_t* head;
  int64_t pixel_stride;
  __device__ void operator()(int64_t pixel, int64_t channel, acc_t grad) const {
    atomicAdd(head + pixel * pixel_stride + channel, grad);
  }
};

// One thread per sampling point (batch, query, head, level, point): it owns that point's location
// and attention gradients and needs no atomics for them.
template <typename scalar_t>
__global__ void backward_kernel(Sizes s, const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                                const scalar_t* __restrict__ attention, const scalar_t* __restrict__ grad_output,
                                at::opmath_type<scalar_t>* __restrict__ grad_value,
                                scalar_t* __restrict__ grad_locations, scalar_t* __restrict__ grad_attention) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.batch * s.queries * s.heads * s.levels * s.points;
  const int64_t pixel_stride = s.heads * s.channels;
  for (int64_t i = global_thread(); i < total; i += thread_count()) {
    const int64_t level = (i / s.points) % s.levels;
    const int64_t row = i / (s.levels * s.points);  // (batch, query, head)
    const int64_t head = row % s.heads;
    const int64_t n = row / (s.queries * s.heads);
    const int64_t head_offset = (n * s.pixels * s.heads + head) * s.channels;
    AtomicAddToHead<acc_t> sink{grad_value + head_offset, pixel_stride};
    acc_t grad_weight = 0, grad_x = 0, grad_y = 0;
    backward_sample<scalar_t, acc_t>(value + head_offset, pixel_stride, shapes, starts, level, locations + 2 * i,
                                     static_cast<acc_t>(attention[i]), grad_output + row * s.channels, s.channels,
                                     sink, grad_weight, grad_x, grad_y);
    grad_locations[2 * i] = static_cast<scalar_t>(grad_x);
    grad_locations[2 * i + 1] = static_cast<scalar_t>(grad_y);
    grad_attention[i] = static_cast<scalar_t>(grad_weight);
  }
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s = sizes_of(value, sampling_locations);
  at::Tensor output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(output.numel()), kThreads, 0, stream>>>(
        s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr<scalar_t>(), attention_weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                             const at::Tensor& level_start_index,
                                                             const at::Tensor& sampling_locations,
                                                             const at::Tensor& attention_weights,
                                                             const at::Tensor& grad_output) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Sizes s = sizes_of(value, sampling_locations);
  // Accumulate value gradients in float for half/bfloat16 (atomics on 16-bit types lose too much).
  const at::ScalarType acc_type = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(acc_type));
  at::Tensor grad_locations = at::zeros_like(sampling_locations);
  at::Tensor grad_attention = at::zeros_like(attention_weights);
  if (attention_weights.numel() > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t><<<blocks_for(attention_weights.numel()), kThreads, 0, stream>>>(
          s, value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
          sampling_locations.data_ptr<scalar_t>(), attention_weights.data_ptr<scalar_t>(),
          grad_output.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(), grad_locations.data_ptr<scalar_t>(),
          grad_attention.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_attention};
}

}  // namespace msda
}  // namespace fcclip
