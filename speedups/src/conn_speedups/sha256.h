/*
 * SHA-256 (FIPS 180-4) of short messages, one message at a time: a portable
 * implementation, and one using the x86 SHA extensions when the CPU has them.
 */
#ifndef CONN_SHA256_H
#define CONN_SHA256_H

#include <stdint.h>
#include <string.h>

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static const uint32_t SHA256_H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

typedef void (*sha256_blocks_fn)(uint32_t state[8], const uint8_t *blocks, size_t count);

static inline uint32_t ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_blocks_portable(uint32_t state[8], const uint8_t *p, size_t count) {
    uint32_t w[64];
    for (; count; count--, p += 64) {
        for (int t = 0; t < 16; t++)
            w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16
                   | (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ror32(w[t - 15], 7) ^ ror32(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ror32(w[t - 2], 17) ^ ror32(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25))
                          + ((e & f) ^ (~e & g)) + SHA256_K[t] + w[t];
            uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22))
                          + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define SHA_NI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* Four rounds with the message words in `msg` (already added to the constants). */
#define SHA_NI_ROUNDS(msg)                                        \
    do {                                                          \
        __m128i m_ = (msg);                                       \
        state1 = _mm_sha256rnds2_epu32(state1, state0, m_);       \
        m_ = _mm_shuffle_epi32(m_, 0x0E);                         \
        state0 = _mm_sha256rnds2_epu32(state0, state1, m_);       \
    } while (0)

SHA_NI_TARGET
static void sha256_blocks_shani(uint32_t st[8], const uint8_t *p, size_t count) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    /* state0 = ABEF, state1 = CDGH (the layout sha256rnds2 works on). */
    __m128i tmp = _mm_loadu_si128((const __m128i *)&st[0]);    /* DCBA */
    __m128i state1 = _mm_loadu_si128((const __m128i *)&st[4]); /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                        /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);                  /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);          /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);               /* CDGH */
    for (; count; count--, p += 64) {
        __m128i abef = state0, cdgh = state1;
        __m128i m[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int r = 0; r < 16; r++) {
            __m128i k = _mm_loadu_si128((const __m128i *)&SHA256_K[4 * r]);
            __m128i cur = m[r & 3];
            SHA_NI_ROUNDS(_mm_add_epi32(cur, k));
            if (r < 12) {
                /* Schedule the words of round group r + 4 from groups r .. r + 3. */
                __m128i next = _mm_sha256msg1_epu32(m[r & 3], m[(r + 1) & 3]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                m[r & 3] = _mm_sha256msg2_epu32(next, m[(r + 3) & 3]);
            }
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);                     /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);                  /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0);               /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);                  /* HGFE */
    _mm_storeu_si128((__m128i *)&st[0], state0);
    _mm_storeu_si128((__m128i *)&st[4], state1);
}

static int cpu_has_sha(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(b & (1u << 29))) return 0; /* SHA */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 19)) && (c & (1u << 9)); /* SSE4.1, SSSE3 */
}
#else
static int cpu_has_sha(void) { return 0; }
#define sha256_blocks_shani sha256_blocks_portable
#endif

/* Digest of one message: the whole 64-byte blocks first, then the padded tail. */
static void sha256_digest(sha256_blocks_fn blocks, const uint8_t *msg, uint64_t len,
                          uint8_t out[32]) {
    uint32_t st[8];
    memcpy(st, SHA256_H0, sizeof st);
    uint64_t whole = len / 64;
    if (whole) blocks(st, msg, (size_t)whole);
    uint8_t tail[128];
    uint64_t rest = len - whole * 64;
    memcpy(tail, msg + whole * 64, (size_t)rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, tail_len - rest - 1);
    uint64_t bits = len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks(st, tail, tail_len / 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(st[i] >> 24);
        out[4 * i + 1] = (uint8_t)(st[i] >> 16);
        out[4 * i + 2] = (uint8_t)(st[i] >> 8);
        out[4 * i + 3] = (uint8_t)st[i];
    }
}

#endif
