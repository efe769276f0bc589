/* torchmim's fused CPU kernels for the inference of small MLPs (issue 11), compiled on first use by
 * torchmim/native/__init__.py (no torch headers: plain C, loaded with ctypes).
 *
 * Why by hand: the IS-NLL of the paper's toy experiments runs a one-hidden-layer MLP decoder
 * (2 -> width -> 4) on 10^7 (x, z) pairs per model. torch runs it as three passes over a
 * (pairs x width) activation (GEMM with K = 2, sigmoid, GEMM with N = 4), each bound by memory
 * traffic or call overhead at these shapes (~1 ns per pair and hidden unit measured). Here one pass
 * keeps a tile of 16 rows in vector registers through every layer: the hidden unit's pre-activation
 * (a broadcast FMA per input), its activation, and its contribution to the narrow output layer,
 * without writing the hidden activation anywhere (~0.4 ns per pair and unit, bench/
 * toy_fast_paths.py --only native). The optional epilogue evaluates the diagonal Gaussian's
 * log-density of the target rows from the (mean, log-variance) outputs, so the decoder's output is
 * never materialised either.
 *
 * Arithmetic: float32; each row's sums run in the order of the layer's inputs (no reassociation is
 * needed: the vectors run across rows), so a row's result does not depend on the tiling or on the
 * threads. exp and log are Cephes-style polynomials (~1 ulp), the reciprocal of the sigmoid one
 * Newton step from AVX-512's 14-bit estimate (~1 ulp): equal to torch's ops up to float rounding
 * (tests/test_native.py). GCC/Clang vector extensions, so the generic path compiles on any target;
 * AVX-512 intrinsics where available.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define T 16 /* rows per tile: one 512-bit vector of floats */
typedef float vf __attribute__((vector_size(4 * T), aligned(64)));
typedef int32_t vi __attribute__((vector_size(4 * T), aligned(64)));

enum { ACT_NONE = 0, ACT_SIGMOID = 1, ACT_SILU = 2, ACT_RELU = 3 };

static inline vf splat(float a) { return a - (vf){0}; }
static inline vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
#if defined(__AVX512F__)
/* min/max return their second operand where either is NaN: NaN propagates, as in torch */
static inline vf vmin(vf a, float b) { return (vf)_mm512_min_ps(_mm512_set1_ps(b), (__m512)a); }
static inline vf vmax(vf a, float b) { return (vf)_mm512_max_ps(_mm512_set1_ps(b), (__m512)a); }
#else
static inline vf vmin(vf a, float b) { return vselect(a > b, splat(b), a); }
static inline vf vmax(vf a, float b) { return vselect(a < b, splat(b), a); }
#endif

/* exp(x), x clamped to [-104, 88.376]: never inf, so 1 + exp(-a) has a finite reciprocal, and
 * the range reduction stays exact (below -104 the result is 0 in float32 anyway). Between 88.376
 * and 88.72, where float32's exp is still finite, this returns exp(88.376): only a log-variance
 * above 176.75 without a clamp reaches it. */
static inline vf exp_v(vf x) {
    x = vmax(vmin(x, 88.3762626647949f), -104.0f);
#if defined(__AVX512F__)
    vf n = (vf)_mm512_roundscale_ps((__m512)(x * 1.44269504088896341f),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    x = vmax(x, -87.3365447505531f); /* 2^n stays a normal float */
    vf t = x * 1.44269504088896341f + 0.5f;
    vi ni = __builtin_convertvector(t, vi);
    ni += (__builtin_convertvector(ni, vf) > t); /* floor: truncation, one down where t < 0 */
    vf n = __builtin_convertvector(ni, vf);
#endif
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = splat(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
#if defined(__AVX512F__)
    return (vf)_mm512_scalef_ps((__m512)p, (__m512)n); /* p * 2^n, 0 below the float range */
#else
    vi e = (ni + 127) << 23;
    return p * (vf)e;
#endif
}

/* log(x) for positive normal x (Cephes logf) */
static inline vf log_v(vf x) {
    vi bits = (vi)x;
    vi e = ((bits >> 23) & 0xff) - 126;
    vf m = (vf)((bits & 0x807fffff) | 0x3f000000); /* x = m 2^e, m in [0.5, 1) */
    vi small = m < 0.707106781186547524f;
    e += small; /* true is -1 */
    m = vselect(small, m + m, m) - 1.0f;
    vf ef = __builtin_convertvector(e, vf);
    vf z = m * m;
    vf y = splat(7.0376836292E-2f);
    y = y * m - 1.1514610310E-1f;
    y = y * m + 1.1676998740E-1f;
    y = y * m - 1.2420140846E-1f;
    y = y * m + 1.4249322787E-1f;
    y = y * m - 1.6668057665E-1f;
    y = y * m + 2.0000714765E-1f;
    y = y * m - 2.4999993993E-1f;
    y = y * m + 3.3333331174E-1f;
    y = y * m * z;
    y = y - 2.12194440e-4f * ef;
    y = y - 0.5f * z;
    return m + y + 0.693359375f * ef;
}

static inline vf recip(vf a) {
#if defined(__AVX512F__)
    vf r = (vf)_mm512_rcp14_ps((__m512)a);
    return r * (2.0f - a * r);
#else
    return 1.0f / a;
#endif
}

static inline vf activate(vf a, int act) {
    switch (act) {
    case ACT_SIGMOID: return recip(1.0f + exp_v(-a));
    case ACT_SILU: return a * recip(1.0f + exp_v(-a));
    case ACT_RELU: return vmax(a, 0.0f);
    default: return a;
    }
}

/* dst[j] = act(b[j] + sum_k w[j, k] src[k]) for j < dout, per row of the tile */
static void layer(int din, int dout, const float *w, const float *b, int act, const vf *src,
                  vf *dst) {
    for (int j = 0; j < dout; j++) {
        vf acc = splat(b[j]);
        const float *wj = w + (long)j * din;
        for (int k = 0; k < din; k++) acc += wj[k] * src[k];
        dst[j] = activate(acc, act);
    }
}

/* The last hidden layer fused with a narrow output layer: each hidden unit's activation is added
 * into the DP outputs as soon as it is computed (ct: the output weight transposed and zero-padded
 * to width x DP; cb: its bias, padded), so the hidden activations are never stored. */
#define FUSED(DP, ACT)                                                                            \
    static void fused##DP##_##ACT(int din, int width, const float *w, const float *b,             \
                                  const float *ct, const float *cb, const vf *src, vf *dst) {     \
        vf o[DP];                                                                                 \
        for (int q = 0; q < DP; q++) o[q] = splat(cb[q]);                                         \
        for (int j = 0; j < width; j++) {                                                         \
            vf acc = splat(b[j]);                                                                 \
            const float *wj = w + (long)j * din;                                                  \
            for (int k = 0; k < din; k++) acc += wj[k] * src[k];                                  \
            acc = activate(acc, ACT);                                                             \
            const float *cj = ct + (long)j * DP;                                                  \
            for (int q = 0; q < DP; q++) o[q] += cj[q] * acc;                                     \
        }                                                                                         \
        for (int q = 0; q < DP; q++) dst[q] = o[q];                                               \
    }
#define FUSED_ALL(DP) FUSED(DP, 0) FUSED(DP, 1) FUSED(DP, 2) FUSED(DP, 3)
FUSED_ALL(4)
FUSED_ALL(8)

typedef void (*fused_fn)(int, int, const float *, const float *, const float *, const float *,
                         const vf *, vf *);
static const fused_fn FUSED_FNS[2][4] = {{fused4_0, fused4_1, fused4_2, fused4_3},
                                         {fused8_0, fused8_1, fused8_2, fused8_3}};

/* The n <= T rows of a row-major (rows x cols) block into cols vectors, lanes past n zero */
static void load_tile(vf *dst, const float *src, int cols, long n) {
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < T; r++) dst[c][r] = r < n ? src[r * cols + c] : 0.0f;
}

/* ... and back: the first n lanes of cols vectors into n rows of a row-major block */
static void store_tile(float *dst, const vf *src, int cols, long n) {
    for (long r = 0; r < n; r++)
        for (int c = 0; c < cols; c++) dst[r * cols + c] = src[c][r];
}

/* log N(target[row mod period]; mean, exp(clamp(logvar)/2) + std_floor) summed over the dx
 * dimensions, for the rows of one tile; out: dx means then dx log-variances */
static vf gaussian(const vf *out, int dx, const float *target, long period, long row0,
                   float std_floor, int clamp, float lo, float hi) {
    const float half_log_2pi = 0.918938533204672742f;
    vf ll = splat(0.0f);
    vi inf = {0};
    long idx[T];
    /* lanes past the last row read a valid target row too: their results are discarded */
    for (int r = 0; r < T; r++) idx[r] = ((row0 + r) % period) * dx;
    for (int d = 0; d < dx; d++) {
        vf x;
        for (int r = 0; r < T; r++) x[r] = target[idx[r] + d];
        vf lv = out[dx + d];
        if (clamp) lv = vmin(vmax(lv, lo), hi); /* torch's clamp: min(max(x, lo), hi) */
        vf std = exp_v(0.5f * lv) + std_floor;
        vf t = (x - out[d]) / std;
        ll += -0.5f * t * t - log_v(std) - half_log_2pi;
        inf |= 0.5f * lv > 88.7228390520683f; /* exp overflows in float32: sigma = inf */
    }
    return vselect(inf, splat(-__builtin_inff()), ll); /* torch's log-density there */
}

/* The MLP with L linear layers (weights w[l]: dims[l+1] x dims[l], row-major; biases b[l]; act[l]
 * after layer l) on `rows` rows of x (rows x dims[0], contiguous). dp in {4, 8}: the last layer
 * is fused with the one before (ct/cb as above); 0: not fused. target == NULL: out is the output
 * (rows x dims[L]); else out is the Gaussian log-density per row (rows), the outputs being
 * [mean, logvar] of dimension dx = dims[L] / 2 each. Returns 0; 1 if out of memory, 2 for an unknown activation code. */
int tm_mlp(long rows, int L, const int *dims, const float *const *w, const float *const *b,
           const int *act, const float *ct, const float *cb, int dp, const float *x, float *out,
           const float *target, long period, float std_floor, int clamp, float lo, float hi) {
    int maxd = dp;
    for (int l = 0; l <= L; l++) maxd = dims[l] > maxd ? dims[l] : maxd;
    int din = dims[0], dout = dims[L];
    for (int l = 0; l < L; l++)
        if (act[l] < ACT_NONE || act[l] > ACT_RELU) return 2;
    int fuse = (dp == 4 || dp == 8) && L >= 2 && dout <= dp;
    vf *buf = aligned_alloc(64, sizeof(vf) * 2 * (size_t)maxd);
    if (!buf) return 1;
    for (long i = 0; i < rows; i += T) {
        long n = rows - i < T ? rows - i : T;
        vf *src = buf, *dst = buf + maxd;
        load_tile(src, x + i * din, din, n);
        for (int l = 0; l < L - (fuse ? 2 : 0); l++) {
            layer(dims[l], dims[l + 1], w[l], b[l], act[l], src, dst);
            vf *t = src; src = dst; dst = t;
        }
        if (fuse) {
            FUSED_FNS[dp == 8][act[L - 2]](dims[L - 2], dims[L - 1], w[L - 2], b[L - 2], ct, cb,
                                           src, dst);
            vf *t = src; src = dst; dst = t;
        }
        if (target) {
            vf ll = gaussian(src, dout / 2, target, period, i, std_floor, clamp, lo, hi);
            for (long r = 0; r < n; r++) out[i + r] = ll[r];
        } else {
            store_tile(out + i * dout, src, dout, n);
        }
    }
    free(buf);
    return 0;
}

/* Training of a vectorised group (issue 11, eighth round): M members' one-hidden-layer sigmoid
 * MLPs y = W2 sigmoid(W1 x + b1) + b2 on B rows each (x: M x B x I, w1: M x H x I, b1: M x H,
 * w2: M x O x H, b2: M x O, all contiguous), for members [m0, m1). torch runs each as ~10 ops of
 * tens of microseconds at a toy group's shapes (2 -> 5..500 -> 4, batch 128); here a tile of 16
 * rows goes through the whole network in registers, as tm_mlp does for inference. */

/* y (M x B x O); I <= 4 and O <= 8 (checked by the caller) */
void tm_group_mlp_forward(long m0, long m1, long B, int I, int H, int O, const float *x,
                          const float *w1, const float *b1, const float *w2, const float *b2,
                          float *y) {
    vf xv[4];
    for (long m = m0; m < m1; m++) {
        const float *W1 = w1 + m * H * I, *B1 = b1 + m * H, *W2 = w2 + m * O * H, *B2 = b2 + m * O;
        for (long r0 = 0; r0 < B; r0 += T) {
            long n = B - r0 < T ? B - r0 : T, base = m * B + r0;
            load_tile(xv, x + base * I, I, n);
            vf acc[8];
            for (int o = 0; o < O; o++) acc[o] = splat(B2[o]);
            for (int k = 0; k < H; k++) {
                vf a = splat(B1[k]);
                for (int i = 0; i < I; i++) a += W1[k * I + i] * xv[i];
                vf h = activate(a, ACT_SIGMOID);
                for (int o = 0; o < O; o++) acc[o] += W2[o * H + k] * h;
            }
            store_tile(y + base * O, acc, O, n);
        }
    }
}

/* Given dy (M x B x O): dx (M x B x I, if not NULL), dw1, db1, dw2, db2 (overwritten). The hidden
 * activations are recomputed, not stored. Each weight's gradient is summed per lane over the tiles
 * and the 16 lanes added at the end. I <= 4 and O <= 8 (checked by the caller). Returns 0, or 1 if
 * out of memory. */
int tm_group_mlp_backward(long m0, long m1, long B, int I, int H, int O, const float *x,
                          const float *w1, const float *b1, const float *w2, const float *dy,
                          float *dx, float *dw1, float *db1, float *dw2, float *db2) {
    vf *pw1 = aligned_alloc(64, sizeof(vf) * (size_t)(H * I + H + O * H + O));
    if (!pw1) return 1;
    vf *pb1 = pw1 + H * I, *pw2 = pb1 + H, *pb2 = pw2 + O * H;
    vf xv[4], gv[8];
    for (long m = m0; m < m1; m++) {
        const float *W1 = w1 + m * H * I, *B1 = b1 + m * H, *W2 = w2 + m * O * H;
        memset(pw1, 0, sizeof(vf) * (size_t)(H * I + H + O * H + O));
        for (long r0 = 0; r0 < B; r0 += T) {
            long n = B - r0 < T ? B - r0 : T, base = m * B + r0;
            load_tile(xv, x + base * I, I, n);
            load_tile(gv, dy + base * O, O, n); /* lanes past the last row: dy = 0, so they add
                                                   nothing to any gradient */
            for (int o = 0; o < O; o++) pb2[o] += gv[o];
            vf dxv[4];
            for (int i = 0; i < I; i++) dxv[i] = splat(0.0f);
            for (int k = 0; k < H; k++) {
                vf a = splat(B1[k]);
                for (int i = 0; i < I; i++) a += W1[k * I + i] * xv[i];
                vf h = activate(a, ACT_SIGMOID);
                vf d = splat(0.0f);
                for (int o = 0; o < O; o++) {
                    d += W2[o * H + k] * gv[o];
                    pw2[o * H + k] += gv[o] * h;
                }
                vf da = d * h * (1.0f - h);
                pb1[k] += da;
                for (int i = 0; i < I; i++) {
                    pw1[k * I + i] += da * xv[i];
                    dxv[i] += W1[k * I + i] * da;
                }
            }
            if (dx) store_tile(dx + base * I, dxv, I, n);
        }
        float *out[4] = {dw1 + m * H * I, db1 + m * H, dw2 + m * O * H, db2 + m * O};
        long len[4] = {(long)H * I, H, (long)O * H, O};
        vf *src[4] = {pw1, pb1, pw2, pb2};
        for (int q = 0; q < 4; q++)
            for (long j = 0; j < len[q]; j++) {
                float s = 0.0f;
                for (int r = 0; r < T; r++) s += src[q][j][r];
                out[q][j] = s;
            }
    }
    free(pw1);
    return 0;
}
