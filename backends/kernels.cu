// deepntk CUDA kernels for narrow dense networks (width n <= MAX_WIDTH): the whole depth loop in one launch.
// Layouts (input index last, so a warp's accesses are contiguous):
//   W (L, n, n), b (L, n), X (n, N), A (L, n, N) layer inputs, D (L, n, N) loss deltas, G (L, K, n, N).
// Compiled lazily by deepntk.backends.cupy_backend with name expressions such as dense_gram<double, 1, 4>.

#define MAX_WIDTH 32
#define GRAM_THREADS 16

// Forward pass of one input held in registers/local memory; optionally stores every layer's input.
template <typename T>
__device__ void forward_one(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                            T* __restrict__ A, T* z, int L, int n, int N, int i) {
    T a[MAX_WIDTH];
    for (int p = 0; p < n; ++p) a[p] = X[(size_t)p * N + i];
    for (int l = 0; l < L; ++l) {
        const T* Wl = W + (size_t)l * n * n;
        const T* bl = b + (size_t)l * n;
        if (A != nullptr)
            for (int p = 0; p < n; ++p) A[((size_t)l * n + p) * N + i] = a[p];
        for (int o = 0; o < n; ++o) {
            T s = bl[o];
            for (int m = 0; m < n; ++m) s += Wl[o * n + m] * a[m];
            z[o] = s;
        }
        if (l < L - 1)
            for (int p = 0; p < n; ++p) a[p] = z[p] > T(0) ? z[p] : T(0);
    }
}

template <typename T>
__global__ void dense_forward(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                              T* __restrict__ out, int L, int n, int k, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    T z[MAX_WIDTH];
    forward_one<T>(W, b, X, nullptr, z, L, n, N, i);
    for (int j = 0; j < k; ++j) out[(size_t)j * N + i] = z[j];
}

// Forward storing A, then backward storing the loss deltas D[l] = dLoss/dz^l for dLoss/df = coeff (f - y).
template <typename T>
__global__ void dense_deltas(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                             const T* __restrict__ Y, T coeff, T* __restrict__ A, T* __restrict__ D,
                             T* __restrict__ out, int L, int n, int k, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    T z[MAX_WIDTH], delta[MAX_WIDTH], prev[MAX_WIDTH];
    forward_one<T>(W, b, X, A, z, L, n, N, i);
    for (int p = 0; p < n; ++p) delta[p] = T(0);
    for (int j = 0; j < k; ++j) {
        out[(size_t)j * N + i] = z[j];
        delta[j] = coeff * (z[j] - Y[(size_t)j * N + i]);
    }
    for (int l = L - 1; l >= 0; --l) {
        for (int p = 0; p < n; ++p) D[((size_t)l * n + p) * N + i] = delta[p];
        if (l == 0) break;
        const T* Wl = W + (size_t)l * n * n;
        for (int m = 0; m < n; ++m) {
            T s = T(0);
            for (int o = 0; o < n; ++o) s += Wl[o * n + m] * delta[o];
            prev[m] = A[((size_t)l * n + m) * N + i] > T(0) ? s : T(0);
        }
        for (int m = 0; m < n; ++m) delta[m] = prev[m];
    }
}

// Activations A and output Jacobians G[l] = df/dz^l (K x n per input) for every layer.
template <typename T, int K>
__global__ void dense_trace(const T* __restrict__ W, const T* __restrict__ b, const T* __restrict__ X,
                            T* __restrict__ A, T* __restrict__ G, int L, int n, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    T z[MAX_WIDTH];
    forward_one<T>(W, b, X, A, z, L, n, N, i);
    T g[K * MAX_WIDTH], prev[MAX_WIDTH];
    for (int j = 0; j < K; ++j)
        for (int p = 0; p < n; ++p) g[j * MAX_WIDTH + p] = (p == j) ? T(1) : T(0);
    for (int l = L - 1; l >= 0; --l) {
        for (int j = 0; j < K; ++j)
            for (int p = 0; p < n; ++p) G[(((size_t)l * K + j) * n + p) * N + i] = g[j * MAX_WIDTH + p];
        if (l == 0) break;
        const T* Wl = W + (size_t)l * n * n;
        for (int j = 0; j < K; ++j) {
            for (int m = 0; m < n; ++m) {
                T s = T(0);
                for (int o = 0; o < n; ++o) s += Wl[o * n + m] * g[j * MAX_WIDTH + o];
                prev[m] = A[((size_t)l * n + m) * N + i] > T(0) ? s : T(0);
            }
            for (int m = 0; m < n; ++m) g[j * MAX_WIDTH + m] = prev[m];
        }
    }
}

// Theta[i, j] = sum_l (A1[l,:,i] . A2[l,:,j] + 1) * G1[l,:,:,i] G2[l,:,:,j]^T, out (N1, N2, K, K).
// A block of GRAM_THREADS^2 threads owns a (MICRO*GRAM_THREADS)^2 tile of the Gram; each thread a MICRO x MICRO
// register tile. Per layer, the tile's activations and Jacobians are staged once in shared memory.
template <typename T, int K, int MICRO>
__global__ void dense_gram(const T* __restrict__ A1, const T* __restrict__ G1, const T* __restrict__ A2,
                           const T* __restrict__ G2, T* __restrict__ out, int L, int n, int N1, int N2,
                           int symmetric) {
    const int TILE = MICRO * GRAM_THREADS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* sA1 = reinterpret_cast<T*>(smem_raw);
    T* sA2 = sA1 + n * TILE;
    T* sG1 = sA2 + n * TILE;
    T* sG2 = sG1 + K * n * TILE;
    const int i0 = blockIdx.y * TILE, j0 = blockIdx.x * TILE;
    if (symmetric && j0 + TILE <= i0) return;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * GRAM_THREADS + tx;
    const int nthreads = GRAM_THREADS * GRAM_THREADS;
    T acc[K][K][MICRO][MICRO];
    for (int x = 0; x < K; ++x)
        for (int y = 0; y < K; ++y)
            for (int u = 0; u < MICRO; ++u)
                for (int v = 0; v < MICRO; ++v) acc[x][y][u][v] = T(0);

    for (int l = 0; l < L; ++l) {
        __syncthreads();
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
        __syncthreads();
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
