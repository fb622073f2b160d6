// deepntk's CUDA kernels: narrow dense networks (width n <= MAX_WIDTH), the whole depth loop in one launch; fused
// CNNs (further down); the CNN limit kernel's pixel-pair sum (at the end).
// Dense layouts (input index last, so a warp's accesses are contiguous), for an ensemble of E networks of one
// architecture (E = 1 for a single network):
//   W (E, L, n, n), b (E, L, n), X (n, N) shared by the networks, A (E, L, n, N) layer inputs, D (E, L, n, N)
//   loss deltas, G (E, L, K, n, N) output Jacobians.
// The network is blockIdx.y for the per-input kernels and blockIdx.z for the Gram, so one launch serves every
// network of an ensemble. Compiled lazily by deepntk.backends.cupy_backend with name expressions such as
// dense_forward<double, 4> or dense_gram<double, 1, 4>.
//
// One thread runs one input through all L layers, so each layer is a short dependent step; what limits it is
// memory latency, not arithmetic. Hence the block stages the weights of WEIGHT_CHUNK layers at a time in shared
// memory with one cooperative, coalesced load (one round trip per chunk instead of one per layer), and the
// backward loops prefetch the next layer's activations while the current layer is computed.
//
// The per-input kernels take the width as a template argument WIDTH (0: the run-time n). With the width compiled
// in, every loop over a layer's rows unrolls and a thread's activations, pre-activations and deltas are
// registers; with a run-time width they are arrays of MAX_WIDTH in local memory (the device's DRAM, behind the
// L1 cache), which ptxas reports as the kernel's stack frame (docs/backends.md#cuda-kernels).

#define MAX_WIDTH 32
#define GRAM_THREADS 16

// Entries of a thread's per-layer arrays: the width itself where it is compiled in.
template <int WIDTH>
constexpr int capacity = WIDTH > 0 ? WIDTH : MAX_WIDTH;

// The width the loops run to: a compile-time constant where WIDTH > 0, so that they unroll.
template <int WIDTH>
__device__ __forceinline__ int loop_width(int n) {
    return WIDTH > 0 ? WIDTH : n;
}

// Stage W[l0:l1] and b[l0:l1] in shared memory, `layer_w` weights and n biases a layer (all threads of the block
// take part; call uniformly).
template <typename T>
__device__ void stage_weights(const T* __restrict__ W, const T* __restrict__ b, T* sW, T* sb, int l0, int l1,
                              int layer_w, int n) {
    __syncthreads();
    const int count_w = (l1 - l0) * layer_w, count_b = (l1 - l0) * n;
    const T* gW = W + (size_t)l0 * layer_w;
    const T* gb = b + (size_t)l0 * n;
    for (int idx = threadIdx.x; idx < count_w; idx += blockDim.x) sW[idx] = gW[idx];
    for (int idx = threadIdx.x; idx < count_b; idx += blockDim.x) sb[idx] = gb[idx];
    __syncthreads();
}

// Forward pass of one input through all layers; optionally stores every layer's input in A.
// `active` is false for the padding threads of the last block: they help stage weights but compute nothing.
template <typename T, int WIDTH>
__device__ __forceinline__ void forward_one(const T* __restrict__ W, const T* __restrict__ b,
                                            const T* __restrict__ X, T* __restrict__ A, T* z, T* sW, T* sb,
                                            int chunk, int L, int width, int N, int i, bool active) {
    const int n = loop_width<WIDTH>(width);
    T a[capacity<WIDTH>];
    if (active) {
#pragma unroll
        for (int p = 0; p < n; ++p) a[p] = X[(size_t)p * N + i];
    }
    for (int l0 = 0; l0 < L; l0 += chunk) {
        const int l1 = min(L, l0 + chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, n * n, n);
        if (!active) continue;
        for (int l = l0; l < l1; ++l) {
            const T* Wl = sW + (size_t)(l - l0) * n * n;
            const T* bl = sb + (size_t)(l - l0) * n;
            if (A != nullptr) {
#pragma unroll
                for (int p = 0; p < n; ++p) A[((size_t)l * n + p) * N + i] = a[p];
            }
#pragma unroll
            for (int o = 0; o < n; ++o) {
                T s = bl[o];
#pragma unroll
                for (int m = 0; m < n; ++m) s += Wl[o * n + m] * a[m];
                z[o] = s;
            }
            if (l < L - 1) {
#pragma unroll
                for (int p = 0; p < n; ++p) a[p] = z[p] <= T(0) ? T(0) : z[p];  // keeps NaN
            }
        }
    }
}

template <typename T, int WIDTH>
__global__ void dense_forward(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                              T* __restrict__ out, int L, int n, int k, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    n = loop_width<WIDTH>(n);
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int e = blockIdx.y;
    W += (size_t)e * L * n * n;
    b += (size_t)e * L * n;
    out += (size_t)e * k * N;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[capacity<WIDTH>];
    forward_one<T, WIDTH>(W, b, X, nullptr, z, sW, sb, chunk, L, n, N, i, active);
    if (active) {
        // Over all n rows with a test, not to k: an index known only at run time would put z in local memory.
#pragma unroll
        for (int p = 0; p < n; ++p)
            if (p < k) out[(size_t)p * N + i] = z[p];
    }
}

// delta <- W_l^T delta, masked where the layer input a (read from A, prefetched) is not positive.
template <typename T, int WIDTH>
__device__ __forceinline__ void backprop_one(const T* Wl, T* delta, const T* mask, int width) {
    const int n = loop_width<WIDTH>(width);
    T prev[capacity<WIDTH>];
#pragma unroll
    for (int m = 0; m < n; ++m) {
        T s = T(0);
#pragma unroll
        for (int o = 0; o < n; ++o) s += Wl[o * n + m] * delta[o];
        prev[m] = mask[m] > T(0) ? s : T(0);
    }
#pragma unroll
    for (int m = 0; m < n; ++m) delta[m] = prev[m];
}

// Walks the layers from the top in weight chunks, prefetching the stored input of the layer below.
// For each layer l (from L-1 down to 0) it calls visit(l, jac) with the current Jacobian/delta rows, then
// backpropagates them through layer l (when l > 0). `ROWS` Jacobian rows are carried (1 or K), each
// capacity<WIDTH> long.
template <typename T, int WIDTH, int ROWS, typename Visit>
__device__ __forceinline__ void backward_one(const T* __restrict__ W, const T* __restrict__ b,
                                             const T* __restrict__ A, T* jac, T* sW, T* sb, int chunk, int L,
                                             int width, int N, int i, bool active, Visit visit) {
    const int n = loop_width<WIDTH>(width);
    T mask[capacity<WIDTH>], next_mask[capacity<WIDTH>];
    if (active) {
#pragma unroll
        for (int m = 0; m < n; ++m) next_mask[m] = A[((size_t)(L - 1) * n + m) * N + i];
    }
    for (int l1 = L; l1 > 0; l1 -= chunk) {
        const int l0 = max(0, l1 - chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, n * n, n);
        if (!active) continue;
        for (int l = l1 - 1; l >= l0; --l) {
#pragma unroll
            for (int m = 0; m < n; ++m) mask[m] = next_mask[m];
            if (l > 1) {
#pragma unroll
                for (int m = 0; m < n; ++m) next_mask[m] = A[((size_t)(l - 1) * n + m) * N + i];
            }
            visit(l, jac);
            if (l == 0) break;
            const T* Wl = sW + (size_t)(l - l0) * n * n;
#pragma unroll
            for (int r = 0; r < ROWS; ++r) backprop_one<T, WIDTH>(Wl, jac + r * capacity<WIDTH>, mask, n);
        }
    }
}

// Forward storing A, then backward storing the loss deltas D[l] = dLoss/dz^l for dLoss/df = coeff (f - y).
template <typename T, int WIDTH>
__global__ void dense_deltas(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                             const T* __restrict__ Y, T coeff, T* __restrict__ A, T* __restrict__ D,
                             T* __restrict__ out, int L, int n, int k, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    n = loop_width<WIDTH>(n);
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int e = blockIdx.y;
    W += (size_t)e * L * n * n;
    b += (size_t)e * L * n;
    A += (size_t)e * L * n * N;
    D += (size_t)e * L * n * N;
    out += (size_t)e * k * N;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[capacity<WIDTH>], delta[capacity<WIDTH>];
    forward_one<T, WIDTH>(W, b, X, A, z, sW, sb, chunk, L, n, N, i, active);
    if (active) {
#pragma unroll
        for (int p = 0; p < n; ++p) {  // over all n rows, as in dense_forward
            delta[p] = T(0);
            if (p < k) {
                out[(size_t)p * N + i] = z[p];
                delta[p] = coeff * (z[p] - Y[(size_t)p * N + i]);
            }
        }
    }
    backward_one<T, WIDTH, 1>(W, b, A, delta, sW, sb, chunk, L, n, N, i, active, [&](int l, const T* d) {
#pragma unroll
        for (int p = 0; p < n; ++p) D[((size_t)l * n + p) * N + i] = d[p];
    });
}

// Activations A and output Jacobians G[l] = df/dz^l (K x n per input) for every layer.
template <typename T, int K, int WIDTH>
__global__ void dense_trace(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                            T* __restrict__ A, T* __restrict__ G, int L, int n, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    n = loop_width<WIDTH>(n);
    constexpr int CAP = capacity<WIDTH>;
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int e = blockIdx.y;
    W += (size_t)e * L * n * n;
    b += (size_t)e * L * n;
    A += (size_t)e * L * n * N;
    G += (size_t)e * L * K * n * N;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[CAP];
    forward_one<T, WIDTH>(W, b, X, A, z, sW, sb, chunk, L, n, N, i, active);
    T g[K * CAP];
#pragma unroll
    for (int j = 0; j < K; ++j) {
#pragma unroll
        for (int p = 0; p < n; ++p) g[j * CAP + p] = (p == j) ? T(1) : T(0);
    }
    backward_one<T, WIDTH, K>(W, b, A, g, sW, sb, chunk, L, n, N, i, active, [&](int l, const T* jac) {
#pragma unroll
        for (int j = 0; j < K; ++j) {
#pragma unroll
            for (int p = 0; p < n; ++p) G[(((size_t)l * K + j) * n + p) * N + i] = jac[j * CAP + p];
        }
    });
}

// Theta[i, j] = sum_l (A1[l,:,i] . A2[l,:,j] + 1) * G1[l,:,:,i] G2[l,:,:,j]^T, out (E, N1, N2, K, K).
// A block of GRAM_THREADS^2 threads owns a (MICRO*GRAM_THREADS)^2 tile of the Gram; each thread a MICRO x MICRO
// register tile. STAGE layers of the tile's activations and Jacobians are staged in shared memory per sync.
template <typename T, int K, int MICRO>
__global__ void dense_gram(const T* __restrict__ A1, const T* __restrict__ G1, const T* __restrict__ A2,
                           const T* __restrict__ G2, T* __restrict__ out, int L, int n, int N1, int N2,
                           int symmetric, int stage) {
    const int TILE = MICRO * GRAM_THREADS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int per_layer = 2 * (1 + K) * n * TILE;
    T* base = reinterpret_cast<T*>(smem_raw);
    const int i0 = blockIdx.y * TILE, j0 = blockIdx.x * TILE;
    if (symmetric && j0 + TILE <= i0) return;
    const int e = blockIdx.z;
    A1 += (size_t)e * L * n * N1;
    G1 += (size_t)e * L * K * n * N1;
    A2 += (size_t)e * L * n * N2;
    G2 += (size_t)e * L * K * n * N2;
    out += (size_t)e * N1 * N2 * K * K;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * GRAM_THREADS + tx;
    const int nthreads = GRAM_THREADS * GRAM_THREADS;
    T acc[K][K][MICRO][MICRO];
#pragma unroll
    for (int x = 0; x < K; ++x)
#pragma unroll
        for (int y = 0; y < K; ++y)
#pragma unroll
            for (int u = 0; u < MICRO; ++u)
#pragma unroll
                for (int v = 0; v < MICRO; ++v) acc[x][y][u][v] = T(0);

    for (int l0 = 0; l0 < L; l0 += stage) {
        const int count = min(stage, L - l0);
        __syncthreads();
        for (int s = 0; s < count; ++s) {
            const int l = l0 + s;
            T* sA1 = base + s * per_layer;
            T* sA2 = sA1 + n * TILE;
            T* sG1 = sA2 + n * TILE;
            T* sG2 = sG1 + K * n * TILE;
            for (int idx = tid; idx < n * TILE; idx += nthreads) {
                int p = idx / TILE, c = idx % TILE;
                int i = i0 + c, j = j0 + c;
                sA1[idx] = i < N1 ? A1[((size_t)l * n + p) * N1 + i] : T(0);
                sA2[idx] = j < N2 ? A2[((size_t)l * n + p) * N2 + j] : T(0);
            }
            for (int idx = tid; idx < K * n * TILE; idx += nthreads) {
                int r = idx / TILE, c = idx % TILE;
                int i = i0 + c, j = j0 + c;
                sG1[idx] = i < N1 ? G1[((size_t)l * K * n + r) * N1 + i] : T(0);
                sG2[idx] = j < N2 ? G2[((size_t)l * K * n + r) * N2 + j] : T(0);
            }
        }
        __syncthreads();
        for (int s = 0; s < count; ++s) {
            const T* sA1 = base + s * per_layer;
            const T* sA2 = sA1 + n * TILE;
            const T* sG1 = sA2 + n * TILE;
            const T* sG2 = sG1 + K * n * TILE;
            T pair[MICRO][MICRO];
#pragma unroll
            for (int u = 0; u < MICRO; ++u)
#pragma unroll
                for (int v = 0; v < MICRO; ++v) pair[u][v] = T(1);
            for (int p = 0; p < n; ++p) {
                T ai[MICRO], aj[MICRO];
#pragma unroll
                for (int u = 0; u < MICRO; ++u) ai[u] = sA1[p * TILE + ty + GRAM_THREADS * u];
#pragma unroll
                for (int v = 0; v < MICRO; ++v) aj[v] = sA2[p * TILE + tx + GRAM_THREADS * v];
#pragma unroll
                for (int u = 0; u < MICRO; ++u)
#pragma unroll
                    for (int v = 0; v < MICRO; ++v) pair[u][v] += ai[u] * aj[v];
            }
#pragma unroll
            for (int x = 0; x < K; ++x) {
#pragma unroll
                for (int y = 0; y < K; ++y) {
                    T jac[MICRO][MICRO];
#pragma unroll
                    for (int u = 0; u < MICRO; ++u)
#pragma unroll
                        for (int v = 0; v < MICRO; ++v) jac[u][v] = T(0);
                    for (int q = 0; q < n; ++q) {
                        T gi[MICRO], gj[MICRO];
#pragma unroll
                        for (int u = 0; u < MICRO; ++u) gi[u] = sG1[(x * n + q) * TILE + ty + GRAM_THREADS * u];
#pragma unroll
                        for (int v = 0; v < MICRO; ++v) gj[v] = sG2[(y * n + q) * TILE + tx + GRAM_THREADS * v];
#pragma unroll
                        for (int u = 0; u < MICRO; ++u)
#pragma unroll
                            for (int v = 0; v < MICRO; ++v) jac[u][v] += gi[u] * gj[v];
                    }
#pragma unroll
                    for (int u = 0; u < MICRO; ++u)
#pragma unroll
                        for (int v = 0; v < MICRO; ++v) acc[x][y][u][v] += pair[u][v] * jac[u][v];
                }
            }
        }
    }
#pragma unroll
    for (int u = 0; u < MICRO; ++u) {
        int i = i0 + ty + GRAM_THREADS * u;
        if (i >= N1) continue;
#pragma unroll
        for (int v = 0; v < MICRO; ++v) {
            int j = j0 + tx + GRAM_THREADS * v;
            if (j >= N2) continue;
#pragma unroll
            for (int x = 0; x < K; ++x)
#pragma unroll
                for (int y = 0; y < K; ++y) out[(((size_t)i * N2 + j) * K + x) * K + y] = acc[x][y][u][v];
        }
    }
}

// ---- Fused CNN kernels: one thread block per (image, network), the image's activations in shared memory -----
// Layouts: W (E, L, n, n, F, F), b (E, L, n), X (N, n, d, d), A (E, L, N, n, d, d) the layer inputs (A[e, 0] = X),
// out (E, N, k). A layer's V = n·d² values are taken by the block's threads in turn: thread t has values
// t + s·blockDim.x for s < PER, its pre-activations in registers until every thread has read the layer's input.
// Output j is the mean over the pixels of channel j of the last layer (global average pooling).

// Σ_s Σ_uv w[o, m, u, v]·src[s, x + STEP·(u − F/2), y + STEP·(v − F/2)] with zero padding, where (o, m) = (c, s)
// for STEP = 1, the correlation of a layer input `src` for output channel c, and (o, m) = (s, c) for STEP = −1, its
// transpose: ∂/∂a[c, x, y] of Σ δ·z for the δ image `src`.
template <typename T, int F, int STEP>
__device__ __forceinline__ T correlate_at(const T* __restrict__ w, const T* __restrict__ src, int n, int d, int c,
                                          int x, int y) {
    constexpr int R = F / 2;
    T sum = T(0);
    for (int s = 0; s < n; ++s) {
        const T* ws = w + (STEP > 0 ? (size_t)c * n + s : (size_t)s * n + c) * F * F;
        const T* src_s = src + (size_t)s * d * d;
#pragma unroll
        for (int u = 0; u < F; ++u) {
            const int xx = x + STEP * (u - R);
            if (xx < 0 || xx >= d) continue;
#pragma unroll
            for (int v = 0; v < F; ++v) {
                const int yy = y + STEP * (v - R);
                if (yy >= 0 && yy < d) sum += ws[u * F + v] * src_s[xx * d + yy];
            }
        }
    }
    return sum;
}

// Outputs (and, with `store`, every layer's input in A) of image blockIdx.x through network blockIdx.y.
// Shared memory: the layer input (V values), then `chunk` layers of weights and biases.
template <typename T, int F, int PER>
__global__ void conv_forward(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                             T* __restrict__ A, T* __restrict__ out, int store, int L, int n, int k, int d, int N,
                             int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int layer_w = n * n * F * F, pixels = d * d, values = n * pixels;
    T* act = reinterpret_cast<T*>(smem_raw);
    T* sW = act + values;
    T* sb = sW + (size_t)chunk * layer_w;
    const int i = blockIdx.x, e = blockIdx.y;
    W += (size_t)e * L * layer_w;
    b += (size_t)e * L * n;
    A += store ? (size_t)e * L * N * values : 0;
    out += (size_t)e * N * k;
    for (int t = threadIdx.x; t < values; t += blockDim.x) act[t] = X[(size_t)i * values + t];
    T z[PER];
    for (int l0 = 0; l0 < L; l0 += chunk) {
        const int l1 = min(L, l0 + chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, layer_w, n);
        for (int l = l0; l < l1; ++l) {
            const T* w = sW + (size_t)(l - l0) * layer_w;
            const T* bl = sb + (size_t)(l - l0) * n;
#pragma unroll
            for (int s = 0; s < PER; ++s) {
                const int t = threadIdx.x + s * blockDim.x;
                if (t >= values) continue;
                if (store) A[((size_t)l * N + i) * values + t] = act[t];
                const int o = t / pixels, p = t % pixels;
                z[s] = bl[o] + correlate_at<T, F, 1>(w, act, n, d, o, p / d, p % d);
            }
            __syncthreads();  // every thread has read the layer's input
#pragma unroll
            for (int s = 0; s < PER; ++s) {
                const int t = threadIdx.x + s * blockDim.x;
                if (t < values) act[t] = (l < L - 1 && z[s] <= T(0)) ? T(0) : z[s];  // keeps NaN; the last layer linear
            }
            __syncthreads();
        }
    }
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        T sum = T(0);
        for (int p = 0; p < pixels; ++p) sum += act[j * pixels + p];
        out[(size_t)i * k + j] = sum / T(pixels);
    }
}

// For image blockIdx.x, network blockIdx.y and each of `rows` output combinations c_r = top[e, i, r, :]:
// grads[e, i, r, l] = (∂/∂W^l, ∂/∂b^l) of Σ_j c_rj·f_j (n·n·F·F + n values a layer), by backpropagation from
// δ^L_r[j, ·] = c_rj/d² through the layers stored in A by conv_forward. rows = 1 with c = ∂ℒ/∂f gives the loss
// gradients per image; c the unit vectors, the per-image Jacobian rows whose inner products are the NTK.
// Shared memory: the layer input (V values), the rows' δ (rows·V), then `chunk` layers of weights and biases.
template <typename T, int F, int PER>
__global__ void conv_backward(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                              const T* __restrict__ A, const T* __restrict__ top, T* __restrict__ grads, int L, int n,
                              int k, int d, int N, int rows, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int R = F / 2;
    const int layer_w = n * n * F * F, layer_p = layer_w + n, pixels = d * d, values = n * pixels;
    T* act = reinterpret_cast<T*>(smem_raw);
    T* delta = act + values;
    T* sW = delta + (size_t)rows * values;
    T* sb = sW + (size_t)chunk * layer_w;
    const int i = blockIdx.x, e = blockIdx.y;
    W += (size_t)e * L * layer_w;
    b += (size_t)e * L * n;
    A += (size_t)e * L * N * values;
    top += ((size_t)e * N + i) * rows * k;
    grads += ((size_t)e * N + i) * rows * L * layer_p;
    for (int t = threadIdx.x; t < rows * values; t += blockDim.x) {
        const int o = t % values / pixels;
        delta[t] = o < k ? top[(t / values) * k + o] / T(pixels) : T(0);
    }
    for (int l1 = L; l1 > 0; l1 -= chunk) {
        const int l0 = max(0, l1 - chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, layer_w, n);
        for (int l = l1 - 1; l >= l0; --l) {
            for (int t = threadIdx.x; t < values; t += blockDim.x)
                act[t] = l == 0 ? X[(size_t)i * values + t] : A[((size_t)l * N + i) * values + t];
            __syncthreads();
            for (int q = threadIdx.x; q < rows * layer_p; q += blockDim.x) {
                const int r = q / layer_p, c = q % layer_p;
                const T* dr = delta + (size_t)r * values;
                T sum = T(0);
                if (c < layer_w) {  // W[o, m, u, v]: Σ_xy δ[o, x, y]·a[m, x + u − R, y + v − R]
                    const int o = c / (n * F * F), m = c / (F * F) % n, u = c / F % F, v = c % F;
                    for (int x = max(0, R - u); x < min(d, d + R - u); ++x)
                        for (int y = max(0, R - v); y < min(d, d + R - v); ++y)
                            sum += dr[o * pixels + x * d + y] * act[m * pixels + (x + u - R) * d + y + v - R];
                } else {
                    for (int p = 0; p < pixels; ++p) sum += dr[(c - layer_w) * pixels + p];
                }
                grads[((size_t)r * L + l) * layer_p + c] = sum;
            }
            if (l == 0) break;
            const T* w = sW + (size_t)(l - l0) * layer_w;
            for (int r = 0; r < rows; ++r) {
                T* dr = delta + (size_t)r * values;
                T next[PER];
#pragma unroll
                for (int s = 0; s < PER; ++s) {
                    const int t = threadIdx.x + s * blockDim.x;
                    if (t >= values) continue;
                    const int m = t / pixels, p = t % pixels;
                    next[s] = act[t] > T(0) ? correlate_at<T, F, -1>(w, dr, n, d, m, p / d, p % d) : T(0);
                }
                __syncthreads();  // every thread has read row r (and, before the first row, computed its gradients)
#pragma unroll
                for (int s = 0; s < PER; ++s) {
                    const int t = threadIdx.x + s * blockDim.x;
                    if (t < values) dr[t] = next[s];
                }
                __syncthreads();
            }
        }
    }
}

// ---- The CNN limit kernel's pixel-pair sum (docs/limit-kernels.md#the-correlation-form) ----------------------
// h(ρ) = 2π·κ/√(s₁s₂) = √(1 − ρ²) + (π − arccos ρ)·ρ = πρ/2 + π/2 − πu + u^{3/2}·G(u), u = (1 − |ρ|)/2, with G the
// degree-16 polynomial whose coefficients c[0..16] are H_CONSTANTS of deepntk.analytic.cnn_pair_sum
// (c[17] = π/2, c[18] = π), by Estrin's scheme as there. NEAR_ONE: every ρ is at least 7/8, and G is the degree-7
// polynomial c[0..7] of H_NEAR_ONE_CONSTANTS (same c[17], c[18]).
template <typename T, int NEAR_ONE>
__device__ __forceinline__ T correlation_h(T rho, const T* __restrict__ c) {
    if constexpr (NEAR_ONE) {
        T u = (T(1) - rho) * T(0.5);
        u = u < T(0) ? T(0) : u;
        const T u2 = u * u, u4 = u2 * u2;
        const T g = (c[0] + c[1] * u) + (c[2] + c[3] * u) * u2 + ((c[4] + c[5] * u) + (c[6] + c[7] * u) * u2) * u4;
        return c[17] * rho + (c[17] - c[18] * u) + u * sqrt(u) * g;
    }
    rho = rho < T(-1) ? T(-1) : (rho > T(1) ? T(1) : rho);
    const T u = (T(1) - (rho < T(0) ? -rho : rho)) * T(0.5);
    const T u2 = u * u, u4 = u2 * u2, u8 = u4 * u4;
    const T low = (c[0] + c[1] * u) + (c[2] + c[3] * u) * u2 + ((c[4] + c[5] * u) + (c[6] + c[7] * u) * u2) * u4;
    const T high =
        (c[8] + c[9] * u) + (c[10] + c[11] * u) * u2 + ((c[12] + c[13] * u) + (c[14] + c[15] * u) * u2) * u4;
    const T g = low + (high + c[16] * u8) * u8;
    return c[17] * rho + (c[17] - c[18] * u) + u * sqrt(u) * g;
}

// out[i, offset + j] = Σ_pq M[live1[i,p], live2[j,q]]·root1[i,p]·root2[j,q]·h(⟨U1[i,p], U2[j,q]⟩) over the first
// count1[i] patches of image i and count2[j] of image j (its nonzero patches, as unit vectors of `width` entries;
// deepntk.analytic.cnn_pair_sum.unit_patches), for image i of the first set and j of this chunk of the second.
// One block per image pair (blockIdx.x = i, blockIdx.y = j); its threads take the patch pairs in turn and add up
// their parts in shared memory (blockDim.x values). With `symmetric`, pairs with offset + j < i are skipped.
// NEAR_ONE: as for correlation_h (c is then H_NEAR_ONE_CONSTANTS).
template <typename T, int NEAR_ONE>
__global__ void cnn_correlation_sums(const T* __restrict__ U1, const T* __restrict__ root1,
                                     const long long* __restrict__ live1, const long long* __restrict__ count1,
                                     int R1, const T* __restrict__ U2, const T* __restrict__ root2,
                                     const long long* __restrict__ live2, const long long* __restrict__ count2,
                                     int R2, int width, const T* __restrict__ M, int D, int columns, int symmetric,
                                     int offset, const T* __restrict__ c, T* __restrict__ out) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* partial = reinterpret_cast<T*>(smem_raw);
    const int i = blockIdx.x, j = blockIdx.y;
    if (symmetric && offset + j < i) return;
    const T* u1 = U1 + (size_t)i * R1 * width;
    const T* u2 = U2 + (size_t)j * R2 * width;
    const int n1 = (int)count1[i], n2 = (int)count2[j];  // at most d² each: 32-bit division, not 64-bit
    T total = T(0);
    for (int pair = threadIdx.x; pair < n1 * n2; pair += blockDim.x) {
        const int p = pair / n2, q = pair % n2;
        T rho = T(0);
        for (int g = 0; g < width; ++g) rho += u1[p * width + g] * u2[q * width + g];
        const T weight = M[(size_t)live1[(size_t)i * R1 + p] * D + live2[(size_t)j * R2 + q]];
        total += weight * root1[(size_t)i * R1 + p] * root2[(size_t)j * R2 + q] * correlation_h<T, NEAR_ONE>(rho, c);
    }
    partial[threadIdx.x] = total;
    for (int half = blockDim.x / 2; half > 0; half /= 2) {  // blockDim.x is a power of two
        __syncthreads();
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    }
    if (threadIdx.x == 0) out[(size_t)i * columns + offset + j] = partial[0];
}
