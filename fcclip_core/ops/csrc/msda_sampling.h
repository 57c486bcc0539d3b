// Bilinear sampling math of multi-scale deformable attention, shared by the CPU and CUDA kernels.
//
// Everything that decides a number lives here: where a normalised location lands on a level, which
// of its four neighbouring pixels exist, their weights, the forward accumulation and the backward
// formulas. The CPU kernel calls these functions over a whole D-vector of channels, the CUDA kernels
// call them for one channel (forward) or one sampling point (backward), so the CPU tests exercise
// the arithmetic the GPU runs.
//
// Convention (identical to F.grid_sample with align_corners=False and zero padding): pixel (row, col)
// of an H x W level has its centre at normalised ((col + 0.5) / W, (row + 0.5) / H); a neighbour that
// lies off the map contributes zero.
//
// Memory layout: a level is addressed through `level_base` (its pixel 0 for one batch item, one head
// and, on the GPU forward, one channel) and `pixel_stride` elements between consecutive pixels.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MSDA_HOST_DEVICE __host__ __device__ __forceinline__
#define MSDA_UNROLL _Pragma("unroll")
#else
#define MSDA_HOST_DEVICE inline
#define MSDA_UNROLL
#endif

// Vectorise a channel loop on the host (GCC would otherwise fully unroll fixed-width loops into
// scalar code); needs -fopenmp or -fopenmp-simd, harmless without.
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#define MSDA_SIMD _Pragma("omp simd")
#else
#define MSDA_SIMD
#endif

namespace fcclip {
namespace msda {

// A channel count known at compile time, passed where it is fixed (one channel per GPU thread, the
// common head widths on the CPU): channel loops get a constant trip count and the accumulator can
// live in registers. Wherever a function takes `Channels`, a plain int64_t works too.
template <int64_t N>
struct FixedChannels {
  MSDA_HOST_DEVICE constexpr operator int64_t() const { return N; }
};

MSDA_HOST_DEVICE float floor_of(float v) { return floorf(v); }
MSDA_HOST_DEVICE double floor_of(double v) { return floor(v); }

// The four neighbours of one sampling point. Corner k is (row0 + k / 2, col0 + k % 2).
template <typename acc_t>
struct BilinearTap {
  int64_t pixel[4];  // row * W + col, meaningful where valid[k]
  bool valid[4];     // the corner lies on the map
  acc_t weight[4];   // bilinear weight of each corner
  acc_t frac_x;      // distance of the point from column col0, in pixels, in [0, 1)
  acc_t frac_y;      // distance of the point from row row0
  acc_t width;       // level size, for the chain rule from pixels to normalised coordinates
  acc_t height;
};

// Locates (loc_x, loc_y) on an H x W level. Returns false when no corner lies on the map (then the
// point contributes nothing and has zero gradient); NaN locations also return false.
template <typename acc_t>
MSDA_HOST_DEVICE bool make_tap(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width, BilinearTap<acc_t>& tap) {
  const acc_t fw = static_cast<acc_t>(width);
  const acc_t fh = static_cast<acc_t>(height);
  const acc_t px = loc_x * fw - acc_t(0.5);
  const acc_t py = loc_y * fh - acc_t(0.5);
  // Outside [-1, W] x [-1, H] all four corners are off the map. The bound keeps the integer
  // conversion below in range for far-away points.
  if (!(px >= acc_t(-1) && px <= fw && py >= acc_t(-1) && py <= fh)) {
    return false;
  }
  const acc_t col_floor = floor_of(px);
  const acc_t row_floor = floor_of(py);
  const int64_t col0 = static_cast<int64_t>(col_floor);
  const int64_t row0 = static_cast<int64_t>(row_floor);
  const acc_t fx = px - col_floor;
  const acc_t fy = py - row_floor;
  tap.frac_x = fx;
  tap.frac_y = fy;
  tap.width = fw;
  tap.height = fh;
  tap.weight[0] = (acc_t(1) - fy) * (acc_t(1) - fx);
  tap.weight[1] = (acc_t(1) - fy) * fx;
  tap.weight[2] = fy * (acc_t(1) - fx);
  tap.weight[3] = fy * fx;
  bool any = false;
MSDA_UNROLL
  for (int k = 0; k < 4; ++k) {
    const int64_t row = row0 + k / 2;
    const int64_t col = col0 + k % 2;
    tap.valid[k] = row >= 0 && row < height && col >= 0 && col < width;
    tap.pixel[k] = row * width + col;
    any = any || tap.valid[k];
  }
  return any;
}

// acc[c] += attention * bilinear sample of channel c, for `channels` consecutive channels.
template <typename scalar_t, typename acc_t, typename Channels>
MSDA_HOST_DEVICE void accumulate_tap(const scalar_t* __restrict__ level_base, int64_t pixel_stride,
                                     const BilinearTap<acc_t>& tap, acc_t attention, acc_t* __restrict__ acc,
                                     Channels channels) {
MSDA_UNROLL
  for (int k = 0; k < 4; ++k) {
    if (!tap.valid[k]) {
      continue;
    }
    const acc_t w = attention * tap.weight[k];
    const scalar_t* __restrict__ src = level_base + tap.pixel[k] * pixel_stride;
    MSDA_SIMD
    for (int64_t c = 0; c < static_cast<int64_t>(channels); ++c) {
      acc[c] += w * static_cast<acc_t>(src[c]);
    }
  }
}

// The forward pass of one (batch, query, head): acc[c] (zeroed by the caller) receives the
// attention-weighted sum over levels and points for `channels` consecutive channels.
//   value_head     value[n, 0, m, c0]: pixel p of level l sits at (starts[l] + p) * pixel_stride
//   shapes/starts  [L, 2] rows (H, W) and [L] first pixel of each level
//   locations      [L, P, 2] normalised (x, y); attention [L, P]
template <typename scalar_t, typename acc_t, typename Channels>
MSDA_HOST_DEVICE void sample_query_head(const scalar_t* __restrict__ value_head, int64_t pixel_stride,
                                        const int64_t* shapes, const int64_t* starts, int64_t levels, int64_t points,
                                        const scalar_t* __restrict__ locations, const scalar_t* __restrict__ attention,
                                        acc_t* __restrict__ acc, Channels channels) {
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t height = shapes[2 * l];
    const int64_t width = shapes[2 * l + 1];
    const scalar_t* level_base = value_head + starts[l] * pixel_stride;
    for (int64_t p = 0; p < points; ++p) {
      const int64_t sample = l * points + p;
      BilinearTap<acc_t> tap;
      if (make_tap(static_cast<acc_t>(locations[2 * sample]), static_cast<acc_t>(locations[2 * sample + 1]), height,
                   width, tap)) {
        accumulate_tap(level_base, pixel_stride, tap, static_cast<acc_t>(attention[sample]), acc, channels);
      }
    }
  }
}

// Gradients of one sampling point over `channels` consecutive channels, given the output gradient
// of its (batch, query, head) row.
//   add_grad_value(pixel, c, g)  receives d loss / d value for pixel `first_pixel + corner pixel`
//                                and channel c; the caller decides whether that needs an atomic
//   grad_attention               += d loss / d attention
//   grad_x, grad_y               += d loss / d normalised location
template <typename scalar_t, typename acc_t, typename GradValueSink>
MSDA_HOST_DEVICE void backward_tap(const scalar_t* __restrict__ level_base, int64_t pixel_stride,
                                   const BilinearTap<acc_t>& tap, acc_t attention,
                                   const scalar_t* __restrict__ grad_out, int64_t channels, int64_t first_pixel,
                                   GradValueSink& add_grad_value, acc_t& grad_attention, acc_t& grad_x,
                                   acc_t& grad_y) {
  const acc_t fx = tap.frac_x;
  const acc_t fy = tap.frac_y;
  // Derivatives of the corner weights with respect to the pixel coordinates (px, py).
  const acc_t dweight_dx[4] = {-(acc_t(1) - fy), acc_t(1) - fy, -fy, fy};
  const acc_t dweight_dy[4] = {-(acc_t(1) - fx), -fx, acc_t(1) - fx, fx};
  acc_t grad_px = 0;
  acc_t grad_py = 0;
MSDA_UNROLL
  for (int k = 0; k < 4; ++k) {
    if (!tap.valid[k]) {
      continue;
    }
    const scalar_t* __restrict__ src = level_base + tap.pixel[k] * pixel_stride;
    const acc_t corner_scale = attention * tap.weight[k];
    acc_t grad_dot_value = 0;  // sum over channels of d loss / d out * corner value
    for (int64_t c = 0; c < channels; ++c) {
      const acc_t g = static_cast<acc_t>(grad_out[c]);
      grad_dot_value += g * static_cast<acc_t>(src[c]);
      add_grad_value(first_pixel + tap.pixel[k], c, corner_scale * g);
    }
    grad_attention += tap.weight[k] * grad_dot_value;
    grad_px += dweight_dx[k] * grad_dot_value;
    grad_py += dweight_dy[k] * grad_dot_value;
  }
  // px = x * W - 0.5, py = y * H - 0.5
  grad_x += attention * grad_px * tap.width;
  grad_y += attention * grad_py * tap.height;
}

// The backward pass of one sampling point (level `level`, location [2], attention) of a
// (batch, query, head) row; value_head and the sink are addressed as in sample_query_head.
template <typename scalar_t, typename acc_t, typename GradValueSink>
MSDA_HOST_DEVICE void backward_sample(const scalar_t* __restrict__ value_head, int64_t pixel_stride,
                                      const int64_t* shapes, const int64_t* starts, int64_t level,
                                      const scalar_t* __restrict__ location, acc_t attention,
                                      const scalar_t* __restrict__ grad_out, int64_t channels,
                                      GradValueSink& add_grad_value, acc_t& grad_attention, acc_t& grad_x,
                                      acc_t& grad_y) {
  BilinearTap<acc_t> tap;
  if (!make_tap(static_cast<acc_t>(location[0]), static_cast<acc_t>(location[1]), shapes[2 * level],
                shapes[2 * level + 1], tap)) {
    return;
  }
  const int64_t first_pixel = starts[level];
  backward_tap(value_head + first_pixel * pixel_stride, pixel_stride, tap, attention, grad_out, channels, first_pixel,
               add_grad_value, grad_attention, grad_x, grad_y);
}

}  // namespace msda
}  // namespace fcclip
