// deepntk CUDA kernels for narrow dense networks (width n <= MAX_WIDTH): the whole depth loop in one launch.
// Layouts (input index last, so a warp's accesses are contiguous):
//   W (L, n, n), b (L, n), X (n, N), A (L, n, N) layer inputs, D (L, n, N) loss deltas, G (L, K, n, N).
// Compiled lazily by deepntk.backends.cupy_backend with name expressions such as dense_gram<double, 1, 4>.
//
// One thread runs one input through all L layers, so each layer is a short dependent step; what limits it is
// memory latency, not arithmetic. Hence the block stages the weights of WEIGHT_CHUNK layers at a time in shared
// memory with one cooperative, coalesced load (one round trip per chunk instead of one per layer), and the
// backward loops prefetch the next layer's activations while the current layer is computed.

#define MAX_WIDTH 32
#define GRAM_THREADS 16

// Stage W[l0:l1] and b[l0:l1] in shared memory (all threads of the block take part; call uniformly).
template <typename T>
__device__ void stage_weights(const T* __restrict__ W, const T* __restrict__ b, T* sW, T* sb, int l0, int l1,
                              int n) {
    __syncthreads();
    const int count_w = (l1 - l0) * n * n, count_b = (l1 - l0) * n;
    const T* gW = W + (size_t)l0 * n * n;
    const T* gb = b + (size_t)l0 * n;
    for (int idx = threadIdx.x; idx < count_w; idx += blockDim.x) sW[idx] = gW[idx];
    for (int idx = threadIdx.x; idx < count_b; idx += blockDim.x) sb[idx] = gb[idx];
    __syncthreads();
}

// Forward pass of one input through all layers; optionally stores every layer's input in A.
// `active` is false for the padding threads of the last block: they help stage weights but compute nothing.
template <typename T>
__device__ void forward_one(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                            T* __restrict__ A, T* z, T* sW, T* sb, int chunk, int L, int n, int N, int i,
                            bool active) {
    T a[MAX_WIDTH];
    if (active)
        for (int p = 0; p < n; ++p) a[p] = X[(size_t)p * N + i];
    for (int l0 = 0; l0 < L; l0 += chunk) {
        const int l1 = min(L, l0 + chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, n);
        if (!active) continue;
        for (int l = l0; l < l1; ++l) {
            const T* Wl = sW + (size_t)(l - l0) * n * n;
            const T* bl = sb + (size_t)(l - l0) * n;
            if (A != nullptr)
                for (int p = 0; p < n; ++p) A[((size_t)l * n + p) * N + i] = a[p];
            for (int o = 0; o < n; ++o) {
                T s = bl[o];
                for (int m = 0; m < n; ++m) s += Wl[o * n + m] * a[m];
                z[o] = s;
            }
            if (l < L - 1)
                for (int p = 0; p < n; ++p) a[p] = z[p] <= T(0) ? T(0) : z[p];  // keeps NaN
        }
    }
}

template <typename T>
__global__ void dense_forward(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                              T* __restrict__ out, int L, int n, int k, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[MAX_WIDTH];
    forward_one<T>(W, b, X, nullptr, z, sW, sb, chunk, L, n, N, i, active);
    if (active)
        for (int j = 0; j < k; ++j) out[(size_t)j * N + i] = z[j];
}

// delta <- W_l^T delta, masked where the layer input a (read from A, prefetched) is not positive.
template <typename T>
__device__ void backprop_one(const T* Wl, T* delta, const T* mask, int n) {
    T prev[MAX_WIDTH];
    for (int m = 0; m < n; ++m) {
        T s = T(0);
        for (int o = 0; o < n; ++o) s += Wl[o * n + m] * delta[o];
        prev[m] = mask[m] > T(0) ? s : T(0);
    }
    for (int m = 0; m < n; ++m) delta[m] = prev[m];
}

// Walks the layers from the top in weight chunks, prefetching the stored input of the layer below.
// For each layer l (from L-1 down to 0) it calls visit(l, jac) with the current Jacobian/delta rows, then
// backpropagates them through layer l (when l > 0). `rows` Jacobian rows of width n are carried (1 or K).
template <typename T, int ROWS, typename Visit>
__device__ void backward_one(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ A, T* jac,
                             T* sW, T* sb, int chunk, int L, int n, int N, int i, bool active, Visit visit) {
    T mask[MAX_WIDTH], next_mask[MAX_WIDTH];
    if (active)
        for (int m = 0; m < n; ++m) next_mask[m] = A[((size_t)(L - 1) * n + m) * N + i];
    for (int l1 = L; l1 > 0; l1 -= chunk) {
        const int l0 = max(0, l1 - chunk);
        stage_weights<T>(W, b, sW, sb, l0, l1, n);
        if (!active) continue;
        for (int l = l1 - 1; l >= l0; --l) {
            for (int m = 0; m < n; ++m) mask[m] = next_mask[m];
            if (l > 1)
                for (int m = 0; m < n; ++m) next_mask[m] = A[((size_t)(l - 1) * n + m) * N + i];
            visit(l, jac);
            if (l == 0) break;
            const T* Wl = sW + (size_t)(l - l0) * n * n;
            for (int r = 0; r < ROWS; ++r) backprop_one<T>(Wl, jac + r * MAX_WIDTH, mask, n);
        }
    }
}

// Forward storing A, then backward storing the loss deltas D[l] = dLoss/dz^l for dLoss/df = coeff (f - y).
template <typename T>
__global__ void dense_deltas(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                             const T* __restrict__ Y, T coeff, T* __restrict__ A, T* __restrict__ D,
                             T* __restrict__ out, int L, int n, int k, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[MAX_WIDTH], delta[MAX_WIDTH];
    forward_one<T>(W, b, X, A, z, sW, sb, chunk, L, n, N, i, active);
    if (active) {
        for (int p = 0; p < n; ++p) delta[p] = T(0);
        for (int j = 0; j < k; ++j) {
            out[(size_t)j * N + i] = z[j];
            delta[j] = coeff * (z[j] - Y[(size_t)j * N + i]);
        }
    }
    backward_one<T, 1>(W, b, A, delta, sW, sb, chunk, L, n, N, i, active, [&](int l, const T* d) {
        for (int p = 0; p < n; ++p) D[((size_t)l * n + p) * N + i] = d[p];
    });
}

// Activations A and output Jacobians G[l] = df/dz^l (K x n per input) for every layer.
template <typename T, int K>
__global__ void dense_trace(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                            T* __restrict__ A, T* __restrict__ G, int L, int n, int N, int chunk) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sW = reinterpret_cast<T*>(smem_raw);
    T* sb = sW + (size_t)chunk * n * n;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < N;
    T z[MAX_WIDTH];
    forward_one<T>(W, b, X, A, z, sW, sb, chunk, L, n, N, i, active);
    T g[K * MAX_WIDTH];
    for (int j = 0; j < K; ++j)
        for (int p = 0; p < n; ++p) g[j * MAX_WIDTH + p] = (p == j) ? T(1) : T(0);
    backward_one<T, K>(W, b, A, g, sW, sb, chunk, L, n, N, i, active, [&](int l, const T* jac) {
        for (int j = 0; j < K; ++j)
            for (int p = 0; p < n; ++p) G[(((size_t)l * K + j) * n + p) * N + i] = jac[j * MAX_WIDTH + p];
    });
}

// Theta[i, j] = sum_l (A1[l,:,i] . A2[l,:,j] + 1) * G1[l,:,:,i] G2[l,:,:,j]^T, out (N1, N2, K, K).
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
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * GRAM_THREADS + tx;
    const int nthreads = GRAM_THREADS * GRAM_THREADS;
    T acc[K][K][MICRO][MICRO];
    for (int x = 0; x < K; ++x)
        for (int y = 0; y < K; ++y)
            for (int u = 0; u < MICRO; ++u)
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
            for (int u = 0; u < MICRO; ++u)
                for (int v = 0; v < MICRO; ++v) pair[u][v] = T(1);
            for (int p = 0; p < n; ++p) {
                T ai[MICRO], aj[MICRO];
                for (int u = 0; u < MICRO; ++u) ai[u] = sA1[p * TILE + ty + GRAM_THREADS * u];
                for (int v = 0; v < MICRO; ++v) aj[v] = sA2[p * TILE + tx + GRAM_THREADS * v];
                for (int u = 0; u < MICRO; ++u)
                    for (int v = 0; v < MICRO; ++v) pair[u][v] += ai[u] * aj[v];
            }
            for (int x = 0; x < K; ++x) {
                for (int y = 0; y < K; ++y) {
                    T jac[MICRO][MICRO];
                    for (int u = 0; u < MICRO; ++u)
                        for (int v = 0; v < MICRO; ++v) jac[u][v] = T(0);
                    for (int q = 0; q < n; ++q) {
                        T gi[MICRO], gj[MICRO];
                        for (int u = 0; u < MICRO; ++u) gi[u] = sG1[(x * n + q) * TILE + ty + GRAM_THREADS * u];
                        for (int v = 0; v < MICRO; ++v) gj[v] = sG2[(y * n + q) * TILE + tx + GRAM_THREADS * v];
                        for (int u = 0; u < MICRO; ++u)
                            for (int v = 0; v < MICRO; ++v) jac[u][v] += gi[u] * gj[v];
                    }
                    for (int u = 0; u < MICRO; ++u)
                        for (int v = 0; v < MICRO; ++v) acc[x][y][u][v] += pair[u][v] * jac[u][v];
                }
            }
        }
    }
    for (int u = 0; u < MICRO; ++u) {
        int i = i0 + ty + GRAM_THREADS * u;
        if (i >= N1) continue;
        for (int v = 0; v < MICRO; ++v) {
            int j = j0 + tx + GRAM_THREADS * v;
            if (j >= N2) continue;
            for (int x = 0; x < K; ++x)
                for (int y = 0; y < K; ++y) out[(((size_t)i * N2 + j) * K + x) * K + y] = acc[x][y][u][v];
        }
    }
}
