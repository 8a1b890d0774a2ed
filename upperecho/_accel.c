/*
 * upperecho._accel: the UTF-8 and ASCII paths of upperecho/transform.py in C,
 * and (at the end of this file) the accept of upperecho/port.py and the
 * datagram reads and writes of upperecho/udp.py.
 *
 * Why: Python's codecs cost about 26 ns per byte of random input (decode with
 * surrogateescape, str.upper, encode), which makes the server, not the
 * network, the bottleneck for anyone piping binary data through it.  This
 * module does the same transform in one pass over the bytes.
 *
 * The definition stays in transform.py: for every input, the output here is
 * byte for byte that of
 *
 *     data.decode("utf-8", "surrogateescape").upper()
 *         .encode("utf-8", "surrogateescape")
 *
 * which is:
 *   - a well-formed UTF-8 sequence (Unicode table 3-7, the rules CPython's
 *     decoder applies) is replaced by the UTF-8 of its uppercase;
 *   - any other byte passes through unchanged, one byte at a time (this is
 *     what surrogateescape round-trips to);
 *   - when the input is not final, a trailing incomplete but so far valid
 *     sequence is not consumed: the caller holds it, as CPython's
 *     incremental decoder does, until the rest arrives.
 *
 * The case table (_accel_table.h) is generated at build time by setup.py
 * from the building interpreter's str.upper(), one entry per code point
 * whose uppercase differs (Python's uppercase is context-free), and records
 * unicodedata.unidata_version so that transform.py can refuse the table
 * when the running interpreter's Unicode differs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__)
#define UPPERECHO_LINUX 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "_accel_table.h"

#if defined(__SSE2__)
#include <emmintrin.h>
/* For each 8-bit mask: the positions of its set bits, and how many. */
static uint16_t bit_pos[256][8];
static unsigned char bit_count[256];
#endif

/* bytes.upper() on one byte: a-z to A-Z, every other byte as it is */
static unsigned char ascii_upper[256];

#define HIGH_BITS 0x8080808080808080ULL

/*
 * Uppercase the 8 ASCII bytes of w at once.  For a byte x < 0x80,
 * x + 0x1F has its high bit set iff x >= 'a' and x + 0x05 iff x > 'z'; no
 * sum carries into the next byte.  Where exactly one is set, clear 0x20.
 */
static inline uint64_t
upper8(uint64_t w)
{
    uint64_t ge_a = w + 0x1F1F1F1F1F1F1F1FULL;
    uint64_t gt_z = w + 0x0505050505050505ULL;
    return w ^ (((ge_a ^ gt_z) & HIGH_BITS) >> 2);
}

/* For a lead byte C2-F4: the length of its sequence, and the range its
 * second byte must be in (Unicode table 3-7); filled in by accel_exec. */
static unsigned char seq_len[256], seq_lo[256], seq_hi[256];

/*
 * Decode the sequence at s (avail >= 1 bytes).  Returns its length (2-4)
 * and sets *cp if it is well-formed; 0 if it is a valid prefix cut short by
 * the end of the input; -1 if s[0] is not the start of a well-formed
 * sequence (it passes through alone, and decoding resumes at s + 1).
 */
static inline int
decode(const unsigned char *s, Py_ssize_t avail, uint32_t *cp)
{
    unsigned char b = s[0];
    int len = seq_len[b], i;
    uint32_t c;

    if (len == 0) {
        return -1; /* a continuation byte, C0, C1 or F5-FF */
    }
    if (avail < 2) {
        return 0;
    }
    if (avail == 2 && b == 0xED && s[1] >= 0xA0 && s[1] <= 0xBF) {
        /* CPython's decoder holds a truncated surrogate at the end of
         * non-final input too (for surrogatepass); it is invalid once
         * the input is final or the next byte comes. */
        return 0;
    }
    if (s[1] < seq_lo[b] || s[1] > seq_hi[b]) {
        return -1; /* overlong, surrogate, beyond U+10FFFF, or no continuation */
    }
    c = ((uint32_t)(b & (0x7F >> len)) << 6) | (s[1] & 0x3F);
    for (i = 2; i < len; i++) {
        if (avail <= i) {
            return 0;
        }
        if ((s[i] & 0xC0) != 0x80) {
            return -1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
}

/* The table entry of cp: 0 if its uppercase is itself, else
 * (offset into UPPER_POOL) << 4 | (length in bytes). */
static inline uint32_t
lookup(uint32_t cp)
{
    uint32_t block = UPPER_STAGE1[cp >> 8];
    return UPPER_ENTRIES[UPPER_STAGE2[(block << 8) | (cp & 0xFF)]];
}


/* For every two-byte character (U+0080-U+07FF, by its low 11 bits): the two
 * bytes it becomes, when that is two bytes (its own, or its uppercase's),
 * else 0; filled in by accel_exec from the case table. */
static uint16_t two_byte[2048];

/*
 * The table entry for the sequence at s, whose first byte is a lead byte
 * and which has at least 4 readable bytes: its mapping if it is well-formed
 * and its code point has one, else 0; and in *valid its length if it is
 * well-formed, else 0.  No branches: in random bytes whether
 * a lead byte starts a valid sequence is a coin toss the CPU cannot predict.
 */
static inline uint32_t
mapped_entry(const unsigned char *s, uint32_t *valid)
{
    uint32_t b = s[0], c1 = s[1], c2 = s[2], c3 = s[3];
    uint32_t len = seq_len[b], ok, cp;

    ok = (uint32_t)(c1 >= seq_lo[b]) & (uint32_t)(c1 <= seq_hi[b]);
    ok &= (uint32_t)(len < 3) | (uint32_t)((c2 & 0xC0) == 0x80);
    ok &= (uint32_t)(len < 4) | (uint32_t)((c3 & 0xC0) == 0x80);
    cp = len == 2   ? ((b & 0x1F) << 6) | (c1 & 0x3F)
         : len == 3 ? ((b & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)
                    : ((b & 0x07) << 18) | ((c1 & 0x3F) << 12) |
                          ((c2 & 0x3F) << 6) | (c3 & 0x3F);
    *valid = len & (0U - ok); /* its length if well-formed, else 0 */
    return lookup(cp & (0U - ok)); /* U+0000 maps to itself: entry 0 */
}

/* Copy n bytes, uppercasing ASCII letters and leaving every other byte. */
static inline void
copy_upper(unsigned char *out, const unsigned char *in, Py_ssize_t n)
{
    Py_ssize_t i = 0;

    for (; n - i >= 8; i += 8) {
        uint64_t w, h;
        memcpy(&w, in + i, 8);
        h = w & ~HIGH_BITS;
        w ^= ((((h + 0x1F1F1F1F1F1F1F1FULL) ^ (h + 0x0505050505050505ULL)) &
               ~w & HIGH_BITS) >>
              2);
        memcpy(out + i, &w, 8);
    }
    for (; i < n; i++) {
        out[i] = ascii_upper[in[i]];
    }
}

/* Copy a sequence of 2 to 4 bytes (without a call to memcpy). */
static inline void
copy_small(unsigned char *d, const unsigned char *u, uint32_t len)
{
    d[0] = u[0];
    d[1] = u[1];
    if (len > 2) {
        d[2] = u[2];
        if (len > 3) {
            d[3] = u[3];
        }
    }
}

/* Overwrite the character at d with its mapping, of the same length. */
static inline void
put_same(unsigned char *d, uint32_t entry)
{
    copy_small(d, UPPER_POOL + (entry >> 4), entry & 0xF);
}

/*
 * Make room in *res (capacity *cap, *o bytes written) for need more bytes.
 * Growth is geometric, so a stream that keeps growing costs amortised O(n).
 */
static int
reserve(PyObject **res, Py_ssize_t *cap, Py_ssize_t o, Py_ssize_t need)
{
    Py_ssize_t want;

    if (*cap - o >= need) {
        return 0;
    }
    want = *cap + (*cap >> 1);
    if (want < o + need) {
        want = o + need;
    }
    if (_PyBytes_Resize(res, want) < 0) {
        return -1;
    }
    *cap = want;
    return 0;
}

#define BLOCK 1024

/*
 * The transform of in[0:n] into a new bytes object *res; returns how many
 * input bytes were consumed (n unless a trailing incomplete sequence is
 * held back, which only happens when final is 0), or -1 with an exception.
 *
 * The output is the input with ASCII letters uppercased, except where a
 * well-formed sequence has an uppercase mapping: every other byte, valid
 * or not, comes out as it went in.  A lead byte is never part of another
 * sequence, so each one can be judged on its own.  Up to 3 bytes from the
 * end that is done in blocks, without data-dependent branches:
 *   1. list the lead bytes that can start a mapped character (MAYMAP);
 *   2. keep those that start a well-formed sequence with a mapping;
 *   3. copy the stretches between them uppercased, and the mappings.
 * The last 3 bytes, where a sequence may be cut short, go one at a time.
 */
static Py_ssize_t
transform_utf8(const unsigned char *in, Py_ssize_t n, int final,
               PyObject **res)
{
    Py_ssize_t cap = n, o = 0, seg = 0, p = 0, i;
    Py_ssize_t fast_end = n > 3 ? n - 3 : 0;
    int scalar = 0;
    /* cand: offsets from the block's start; 16 spare for vector stores */
    uint16_t cand[BLOCK + 16];
    Py_ssize_t ppos[BLOCK];
    uint32_t pentry[BLOCK];
    unsigned char *out;

    /* Invariant: cap - o >= n - seg, so every byte that maps to one byte
     * (ASCII, passed-through bytes, same-length uppercases) has room;
     * only an uppercase longer than its character reserves more. */
    *res = PyBytes_FromStringAndSize(NULL, cap);
    if (*res == NULL) {
        return -1;
    }
    out = (unsigned char *)PyBytes_AS_STRING(*res);
    while (p < fast_end) {
        Py_ssize_t end = fast_end - p > BLOCK ? p + BLOCK : fast_end;
        Py_ssize_t k = 0, m = 0, j, q = p, from;

#if defined(__SSE2__)
        /* 16 bytes at a time: compare with the ranges of MAYMAP, and
         * append the positions of the hits from a table. */
        while (!scalar && end - q >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(in + q));
            __m128i hit = _mm_setzero_si128();
            int r, bits;
            for (r = 0; r < UPPER_MAYMAP_RANGES; r++) {
                __m128i t = _mm_sub_epi8(v, _mm_set1_epi8((char)UPPER_MAYMAP_LO[r]));
                __m128i width = _mm_set1_epi8(
                    (char)(UPPER_MAYMAP_HI[r] - UPPER_MAYMAP_LO[r]));
                hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_min_epu8(t, width), t));
            }
            bits = _mm_movemask_epi8(hit);
            if (bits) {
                __m128i at = _mm_set1_epi16((short)(q - p));
                __m128i lo = _mm_loadu_si128((const __m128i *)bit_pos[bits & 0xFF]);
                __m128i hi = _mm_loadu_si128((const __m128i *)bit_pos[bits >> 8]);
                _mm_storeu_si128((__m128i *)(cand + k), _mm_add_epi16(lo, at));
                k += bit_count[bits & 0xFF];
                at = _mm_add_epi16(at, _mm_set1_epi16(8));
                _mm_storeu_si128((__m128i *)(cand + k), _mm_add_epi16(hi, at));
                k += bit_count[bits >> 8];
            }
            q += 16;
        }
#endif
        while (!scalar && q < end) {
            if (end - q >= 8) {
                uint64_t w;
                memcpy(&w, in + q, 8);
                if (w & HIGH_BITS) {
                    for (j = 0; j < 8; j++) {
                        cand[k] = (uint16_t)(q + j - p);
                        k += UPPER_MAYMAP[in[q + j]];
                    }
                }
                q += 8;
            }
            else {
                cand[k] = (uint16_t)(q - p);
                k += UPPER_MAYMAP[in[q]];
                q++;
            }
        }
        if (k * 5 > end - p) {
            scalar = 1; /* for this block and the next ones */
        }
        if (scalar) {
            /* Text in a script with case (Greek, Cyrillic, ...): most of
             * its characters map; one at a time, with branches that text
             * makes predictable and a table for two-byte characters, is
             * faster than listing them.  Bytes that are not UTF-8 (random
             * data) make those branches a coin toss: from the next block
             * on, list again. */
            Py_ssize_t invalid = 0;
            Py_ssize_t at = seg;
            while (at < end) {
                unsigned char b = in[at];
                uint32_t valid = 0, entry = 0, mlen, x;
                if (b < 0x80) {
                    uint64_t w;
                    if (end - at >= 8) {
                        /* more than one: perhaps a run of ASCII */
                        memcpy(&w, in + at, 8);
                        if (!(w & HIGH_BITS)) {
                            w = upper8(w);
                            memcpy(out + o, &w, 8);
                            o += 8;
                            at += 8;
                            continue;
                        }
                    }
                    out[o++] = ascii_upper[b];
                    at++;
                    continue;
                }
                if ((b & 0xE0) == 0xC0 && (in[at + 1] & 0xC0) == 0x80) {
                    uint16_t two = two_byte[((b & 0x1F) << 6) | (in[at + 1] & 0x3F)];
                    if (two != 0) {
                        memcpy(out + o, &two, 2);
                        o += 2;
                        at += 2;
                        continue;
                    }
                }
                if ((b & 0xF0) == 0xE0 && !UPPER_MAYMAP[b] &&
                    in[at + 1] >= seq_lo[b] && in[at + 1] <= seq_hi[b] &&
                    (in[at + 2] & 0xC0) == 0x80) {
                    /* a three-byte character with no uppercase (CJK) */
                    copy_small(out + o, in + at, 3);
                    o += 3;
                    at += 3;
                    continue;
                }
                if (b >= 0xC2 && b <= 0xF4) {
                    entry = mapped_entry(in + at, &valid);
                }
                if (valid == 0) {
                    out[o++] = b; /* not well-formed: passes through */
                    at++;
                    invalid++;
                    continue;
                }
                mlen = entry == 0 ? valid : entry & 0xF;
                if (mlen > valid) {
                    if (reserve(res, &cap, o, (n - at) - valid + mlen) < 0) {
                        return -1;
                    }
                    out = (unsigned char *)PyBytes_AS_STRING(*res);
                }
                for (x = 0; x < mlen; x++) {
                    out[o + x] = entry == 0 ? in[at + x] : UPPER_POOL[(entry >> 4) + x];
                }
                o += mlen;
                at += valid;
            }
            if (invalid * 32 > end - p) {
                scalar = 0;
            }
            seg = at;
            p = end;
            continue;
        }
        for (j = 0; j < k; j++) {
            uint32_t valid, entry = mapped_entry(in + p + cand[j], &valid);
            ppos[m] = p + cand[j];
            pentry[m] = entry;
            m += entry != 0;
        }
        /* Copy each stretch up to a mapping of another length than its
         * character (ΐ, ȿ, ı) uppercased, and put the mappings of the
         * same length (most: Greek, Cyrillic, ß to SS) into it in place. */
        for (j = 0, from = 0; j <= m; j++) {
            Py_ssize_t at, len = 0, mlen = 0, base, x;
            if (j < m) {
                at = ppos[j];
                len = seq_len[in[at]];
                mlen = (Py_ssize_t)(pentry[j] & 0xF);
                if (mlen == len) {
                    continue;
                }
                if (mlen > len) {
                    if (reserve(res, &cap, o, (n - seg) - len + mlen) < 0) {
                        return -1;
                    }
                    out = (unsigned char *)PyBytes_AS_STRING(*res);
                }
            }
            else {
                /* the block's end, or past it the end of its last sequence */
                at = end;
                if (m > 0 && ppos[m - 1] + seq_len[in[ppos[m - 1]]] > at) {
                    at = ppos[m - 1] + seq_len[in[ppos[m - 1]]];
                }
                if (at < seg) {
                    at = seg;
                }
            }
            base = o - seg;
            copy_upper(out + o, in + seg, at - seg);
            o += at - seg;
            seg = at;
            for (x = from; x < j; x++) {
                put_same(out + base + ppos[x], pentry[x]);
            }
            from = j + 1;
            if (j < m) {
                memcpy(out + o, UPPER_POOL + (pentry[j] >> 4), (size_t)mlen);
                o += mlen;
                seg = at + len;
            }
        }
        p = end;
    }
    if (seg < fast_end) {
        copy_upper(out + o, in + seg, fast_end - seg);
        o += fast_end - seg;
        seg = fast_end;
    }
    /* The last bytes.  Resuming at a continuation byte of a sequence that
     * began before fast_end is harmless: an unmapped sequence comes out as
     * its bytes, which is what passing them through one by one gives. */
    for (i = seg; i < n;) {
        uint32_t cp = 0, entry;
        int len;

        if (in[i] < 0x80) {
            out[o++] = ascii_upper[in[i++]];
            continue;
        }
        len = decode(in + i, n - i, &cp);
        if (len == 0 && !final) {
            break; /* held by the caller until the rest arrives */
        }
        if (len <= 0) {
            out[o++] = in[i++];
            continue;
        }
        entry = lookup(cp);
        if (entry == 0) {
            memcpy(out + o, in + i, (size_t)len);
            o += len;
        }
        else {
            Py_ssize_t mlen = (Py_ssize_t)(entry & 0xF);
            if (mlen > len) {
                if (reserve(res, &cap, o, (n - i - len) + mlen) < 0) {
                    return -1;
                }
                out = (unsigned char *)PyBytes_AS_STRING(*res);
            }
            memcpy(out + o, UPPER_POOL + (entry >> 4), (size_t)mlen);
            o += mlen;
        }
        i += len;
    }
    if (o != cap && _PyBytes_Resize(res, o) < 0) {
        return -1;
    }
    return i;
}

PyDoc_STRVAR(upper_utf8_doc,
"upper_utf8(data, final, /) -> (bytes, int)\n\
\n\
Uppercase UTF-8 bytes exactly as upperecho.transform's definition does;\n\
return the result and how many bytes of data it covers.  Unless final is\n\
true, an incomplete trailing character is left out of that count for the\n\
caller to hold until the rest of it arrives.");

static PyObject *
upper_utf8(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *out = NULL, *result;
    Py_ssize_t used;
    int final;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "upper_utf8() takes exactly 2 arguments");
        return NULL;
    }
    final = PyObject_IsTrue(args[1]);
    if (final < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    used = transform_utf8((const unsigned char *)view.buf, view.len, final,
                          &out);
    PyBuffer_Release(&view);
    if (used < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    result = Py_BuildValue("(Nn)", out, used);
    return result;
}

PyDoc_STRVAR(upper_ascii_doc,
"upper_ascii(data, /) -> bytes | None\n\
\n\
data.upper() if data is all ASCII, else None: the check and the\n\
uppercase in one pass.");

static PyObject *
upper_ascii(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    PyObject *res;
    const unsigned char *in;
    unsigned char *out;
    Py_ssize_t i = 0, n;

    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    in = (const unsigned char *)view.buf;
    n = view.len;
    res = PyBytes_FromStringAndSize(NULL, n);
    if (res == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(res);
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
        if (w & HIGH_BITS) {
            goto notascii;
        }
        w = upper8(w);
        memcpy(out + i, &w, 8);
    }
    for (; i < n; i++) {
        if (in[i] & 0x80) {
            goto notascii;
        }
        out[i] = ascii_upper[in[i]];
    }
    PyBuffer_Release(&view);
    return res;

notascii:
    PyBuffer_Release(&view);
    Py_DECREF(res);
    Py_RETURN_NONE;
}

#if defined(UPPERECHO_LINUX) && defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define HAVE_ACCEPT_NONBLOCKING 1

/*
 * Why: Python's socket._accept() gives a blocking descriptor, which Twisted
 * then makes non-blocking (one more system call, ioctl FIONBIO, per
 * connection), and says "no more connections waiting" by raising
 * BlockingIOError, whose message is looked up and decoded each time; the
 * accept loop ends that way on about every other pass for a client that
 * connects once at a time.  accept4() with SOCK_NONBLOCK does both in the
 * one call, and None costs nothing.
 */

PyDoc_STRVAR(accept_nonblocking_doc,
"accept_nonblocking(fd, /) -> (int, tuple) | None\n\
\n\
Accept one connection on the listening socket fd, as socket._accept()\n\
does, but with the new descriptor non-blocking (and close-on-exec) from\n\
the start, and None instead of BlockingIOError when none is waiting:\n\
return its descriptor and the peer's address, (host, port) for IPv4 and\n\
(host, port, flowinfo, scope_id) for IPv6.  Any other error is raised\n\
as OSError.  fd must be non-blocking; the call never waits.");

static PyObject *
accept_nonblocking(PyObject *module, PyObject *arg)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char host[INET6_ADDRSTRLEN];
    long listener;
    int fd;
    PyObject *result;

    listener = PyLong_AsLong(arg);
    if (listener == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (listener < 0 || listener > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    memset(&peer, 0, sizeof peer);
    /* the listening socket is non-blocking: this returns at once, so the
       GIL is kept (releasing and taking it would cost more than the call) */
    fd = accept4((int)listener, (struct sockaddr *)&peer, &len,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            Py_RETURN_NONE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (peer.ss_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&peer;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host) != NULL) {
            result = Py_BuildValue("(i(si))", fd, host,
                                   (int)ntohs(in4->sin_port));
            goto built;
        }
    }
    else if (peer.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&peer;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) != NULL) {
            result = Py_BuildValue("(i(siII))", fd, host,
                                   (int)ntohs(in6->sin6_port),
                                   (unsigned int)ntohl(in6->sin6_flowinfo),
                                   (unsigned int)in6->sin6_scope_id);
            goto built;
        }
    }
    else {
        errno = EAFNOSUPPORT;
    }
    /* not a TCP/IP peer, or an address inet_ntop refused: say so, and do
       not leak the descriptor */
    PyErr_SetFromErrno(PyExc_OSError);
    close(fd);
    return NULL;

built:
    if (result == NULL) {
        close(fd);
    }
    return result;
}
#endif

#if defined(UPPERECHO_LINUX) && defined(MSG_WAITFORONE)
#define HAVE_RECV_DATAGRAMS 1

/* the most datagrams one recv_datagrams call reads */
#define RECV_DATAGRAMS_MAX 64

/*
 * Why: a UDP port reads every datagram waiting on one read event, and in
 * Python each one costs a recvmsg() call: its arguments parsed, a system
 * call, the result tuple built, and the sender's address formatted with
 * inet_ntoa (sprintf); the loop then ends on a BlockingIOError.  About
 * 2 us per datagram here, where the echo's whole work is about 8.
 * recvmmsg() reads a burst in one system call, and the addresses are
 * formatted here.
 */

/* "a.b.c.d" of an IPv4 address in network order, into out (16 bytes) */
static void
format_ipv4(const unsigned char *a, char *out)
{
    int i;
    for (i = 0; i < 4; i++) {
        unsigned int v = a[i];
        if (v >= 100) {
            *out++ = (char)('0' + v / 100);
            v %= 100;
            *out++ = (char)('0' + v / 10);
            *out++ = (char)('0' + v % 10);
        }
        else if (v >= 10) {
            *out++ = (char)('0' + v / 10);
            *out++ = (char)('0' + v % 10);
        }
        else {
            *out++ = (char)('0' + v);
        }
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* the address tuple socket.recvmsg gives for a sender, or NULL */
static PyObject *
peer_address(const struct sockaddr_storage *peer)
{
    char host[INET6_ADDRSTRLEN];

    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)peer;
        format_ipv4((const unsigned char *)&in4->sin_addr, host);
        return Py_BuildValue("(si)", host, (int)ntohs(in4->sin_port));
    }
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned int)in6->sin6_scope_id);
    }
    errno = EAFNOSUPPORT;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* socket.recvmsg's ancillary list for one message */
static PyObject *
ancillary_list(struct msghdr *msg)
{
    struct cmsghdr *c;
    PyObject *list = PyList_New(0);

    if (list == NULL) {
        return NULL;
    }
    for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        /* what of its data the buffer holds: ancillary data that did not
           fit (MSG_CTRUNC) ends at the buffer's end, as recvmsg gives it */
        const char *end = (const char *)msg->msg_control + msg->msg_controllen;
        const char *data = (const char *)CMSG_DATA(c);
        size_t len;
        PyObject *item;
        if (c->cmsg_len < CMSG_LEN(0) || data > end) {
            break;
        }
        len = c->cmsg_len - CMSG_LEN(0);
        if (len > (size_t)(end - data)) {
            len = (size_t)(end - data);
        }
        item = Py_BuildValue("(iiy#)", c->cmsg_level, c->cmsg_type, data,
                             (Py_ssize_t)len);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

PyDoc_STRVAR(recv_datagrams_doc,
"recv_datagrams(fd, buffer, size, ancillary_space, /) -> list\n\
\n\
Read the datagrams waiting on the non-blocking UDP socket fd, as many as\n\
fit in buffer (a writable buffer of at most 64 slots of size bytes), in\n\
one recvmmsg() call: a list of (data, ancillary, address), each what\n\
socket.recvmsg(size, ancillary_space) gives less its flags; [] when none\n\
is waiting.  Any other error is raised as OSError.  A datagram longer\n\
than size is cut to size, as recvmsg cuts it.");

static PyObject *
recv_datagrams(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct mmsghdr msgs[RECV_DATAGRAMS_MAX];
    struct iovec iov[RECV_DATAGRAMS_MAX];
    struct sockaddr_storage peers[RECV_DATAGRAMS_MAX];
    /* room for each message's ancillary data, aligned for cmsghdr */
    union {
        struct cmsghdr align;
        char bytes[64];
    } control[RECV_DATAGRAMS_MAX];
    Py_buffer view;
    long fd, size, space;
    Py_ssize_t count, i;
    int got;
    PyObject *result = NULL;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "recv_datagrams() takes exactly 4 arguments");
        return NULL;
    }
    fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    size = PyLong_AsLong(args[2]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    space = PyLong_AsLong(args[3]);
    if (space == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX || size <= 0 || size > INT_MAX || space < 0
        || space > (long)sizeof control[0]) {
        PyErr_SetString(PyExc_ValueError,
                        "recv_datagrams(): fd, size or ancillary_space out of range");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    count = view.len / size;
    if (count > RECV_DATAGRAMS_MAX) {
        count = RECV_DATAGRAMS_MAX;
    }
    if (count < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "recv_datagrams(): buffer smaller than size");
        return NULL;
    }
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (i = 0; i < count; i++) {
        iov[i].iov_base = (char *)view.buf + i * size;
        iov[i].iov_len = (size_t)size;
        msgs[i].msg_hdr.msg_name = &peers[i];
        msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = space ? control[i].bytes : NULL;
        msgs[i].msg_hdr.msg_controllen = (size_t)space;
    }
    /* non-blocking, as the port's socket is: the GIL is kept */
    got = recvmmsg((int)fd, msgs, (unsigned int)count, MSG_DONTWAIT, NULL);
    if (got < 0) {
        PyBuffer_Release(&view);
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return PyList_New(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    result = PyList_New(got);
    if (result == NULL) {
        goto done;
    }
    for (i = 0; i < got; i++) {
        PyObject *data, *ancillary, *addr, *item;
        size_t len = msgs[i].msg_len;
        if (len > (size_t)size) {
            len = (size_t)size;
        }
        data = PyBytes_FromStringAndSize(iov[i].iov_base, (Py_ssize_t)len);
        ancillary = space ? ancillary_list(&msgs[i].msg_hdr) : PyList_New(0);
        addr = peer_address(&peers[i]);
        if (data == NULL || ancillary == NULL || addr == NULL) {
            Py_XDECREF(data);
            Py_XDECREF(ancillary);
            Py_XDECREF(addr);
            Py_CLEAR(result);
            goto done;
        }
        item = PyTuple_Pack(3, data, ancillary, addr);
        Py_DECREF(data);
        Py_DECREF(ancillary);
        Py_DECREF(addr);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    PyBuffer_Release(&view);
    return result;
}
#endif

#if defined(UPPERECHO_LINUX) && defined(HAVE_RECV_DATAGRAMS)
#define HAVE_SEND_DATAGRAMS 1

/*
 * Why: the replies to a burst of datagrams are held until the burst is
 * read (upperecho.udp), then sent one sendto() each: per reply its
 * arguments parsed, the host parsed, a system call.  sendmmsg() sends them
 * in one call.  Only what is plain here is taken (a host inet_pton reads,
 * at most one ancillary item that fits): the first reply that is not, or
 * that the kernel refuses, is left to the caller's sendto, whose error
 * handling is the one that counts.
 */

/* fill *to from (host, port) for family; 0 if this is not one we take */
static int
reply_address(PyObject *addr, int family, struct sockaddr_storage *to,
              socklen_t *len)
{
    PyObject *host;
    const char *text;
    long port;

    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) != 2) {
        return 0;
    }
    host = PyTuple_GET_ITEM(addr, 0);
    if (!PyUnicode_Check(host) || !PyLong_Check(PyTuple_GET_ITEM(addr, 1))) {
        return 0;
    }
    port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port < 0 || port > 65535) {
        PyErr_Clear();
        return 0;
    }
    text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    memset(to, 0, sizeof *to);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)to;
        if (inet_pton(AF_INET, text, &in4->sin_addr) != 1) {
            return 0;
        }
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        return 1;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)to;
        if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1) {
            return 0;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 1;
    }
    return 0;
}

/* the one ancillary item of source into control; 0 if not one we take */
static int
reply_source(PyObject *source, char *control, size_t room, size_t *used)
{
    PyObject *item, *data;
    struct cmsghdr *c;
    long level, type;
    Py_ssize_t n;

    *used = 0;
    if (source == Py_None) {
        return 1;
    }
    if (!PyList_Check(source) || PyList_GET_SIZE(source) != 1) {
        return 0;
    }
    item = PyList_GET_ITEM(source, 0);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
        return 0;
    }
    data = PyTuple_GET_ITEM(item, 2);
    if (!PyBytes_Check(data) || !PyLong_Check(PyTuple_GET_ITEM(item, 0))
        || !PyLong_Check(PyTuple_GET_ITEM(item, 1))) {
        return 0;
    }
    level = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
    type = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    n = PyBytes_GET_SIZE(data);
    if (level < INT_MIN || level > INT_MAX || type < INT_MIN || type > INT_MAX
        || CMSG_SPACE((size_t)n) > room) {
        return 0;
    }
    memset(control, 0, CMSG_SPACE((size_t)n));
    c = (struct cmsghdr *)control;
    c->cmsg_level = (int)level;
    c->cmsg_type = (int)type;
    c->cmsg_len = CMSG_LEN((size_t)n);
    memcpy(CMSG_DATA(c), PyBytes_AS_STRING(data), (size_t)n);
    *used = CMSG_SPACE((size_t)n);
    return 1;
}

PyDoc_STRVAR(send_datagrams_doc,
"send_datagrams(fd, family, replies, start, /) -> int\n\
\n\
Send replies[start:], each a (data, address, source) of upperecho.udp\n\
(source: None, or sendmsg's ancillary list of one item), on the UDP\n\
socket fd of the given family, in as few sendmmsg() calls as it takes;\n\
return the index of the first reply not sent (len(replies) when all\n\
were): its address or source is not a plain one, or the kernel refused\n\
it, and the caller sends it its own way (and learns the error there).");

static PyObject *
send_datagrams(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct mmsghdr msgs[RECV_DATAGRAMS_MAX];
    struct iovec iov[RECV_DATAGRAMS_MAX];
    struct sockaddr_storage to[RECV_DATAGRAMS_MAX];
    union {
        struct cmsghdr align;
        char bytes[64];
    } control[RECV_DATAGRAMS_MAX];
    PyObject *replies;
    long fd, family;
    Py_ssize_t start, total;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "send_datagrams() takes exactly 4 arguments");
        return NULL;
    }
    fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    family = PyLong_AsLong(args[1]);
    if (family == -1 && PyErr_Occurred()) {
        return NULL;
    }
    replies = args[2];
    if (!PyList_Check(replies)) {
        PyErr_SetString(PyExc_TypeError, "send_datagrams(): replies must be a list");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[3]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    total = PyList_GET_SIZE(replies);
    if (fd < 0 || fd > INT_MAX || start < 0 || start > total) {
        PyErr_SetString(PyExc_ValueError,
                        "send_datagrams(): fd or start out of range");
        return NULL;
    }
    while (start < total) {
        Py_ssize_t count = 0;
        int sent;
        /* the plain replies from start on, at most a batch of them */
        while (count < RECV_DATAGRAMS_MAX && start + count < total) {
            PyObject *reply = PyList_GET_ITEM(replies, start + count);
            PyObject *data;
            socklen_t len = 0;
            size_t used = 0;
            if (!PyTuple_Check(reply) || PyTuple_GET_SIZE(reply) != 3) {
                break;
            }
            data = PyTuple_GET_ITEM(reply, 0);
            if (!PyBytes_Check(data)
                || !reply_address(PyTuple_GET_ITEM(reply, 1), (int)family,
                                  &to[count], &len)
                || !reply_source(PyTuple_GET_ITEM(reply, 2),
                                 control[count].bytes,
                                 sizeof control[count].bytes, &used)) {
                break;
            }
            /* (the list holds data: valid while this call runs) */
            iov[count].iov_base = PyBytes_AS_STRING(data);
            iov[count].iov_len = (size_t)PyBytes_GET_SIZE(data);
            memset(&msgs[count], 0, sizeof msgs[count]);
            msgs[count].msg_hdr.msg_name = &to[count];
            msgs[count].msg_hdr.msg_namelen = len;
            msgs[count].msg_hdr.msg_iov = &iov[count];
            msgs[count].msg_hdr.msg_iovlen = 1;
            msgs[count].msg_hdr.msg_control = used ? control[count].bytes : NULL;
            msgs[count].msg_hdr.msg_controllen = used;
            count++;
        }
        if (count == 0) {
            break; /* replies[start] is the caller's */
        }
        /* non-blocking socket: the GIL is kept */
        sent = sendmmsg((int)fd, msgs, (unsigned int)count, MSG_DONTWAIT);
        if (sent <= 0) {
            break; /* refused: replies[start] is the caller's */
        }
        start += sent;
        if (sent < count) {
            break;
        }
    }
    return PyLong_FromSsize_t(start);
}
#endif

static PyMethodDef accel_methods[] = {
    {"upper_utf8", (PyCFunction)(void (*)(void))upper_utf8, METH_FASTCALL,
     upper_utf8_doc},
    {"upper_ascii", upper_ascii, METH_O, upper_ascii_doc},
#ifdef HAVE_ACCEPT_NONBLOCKING
    {"accept_nonblocking", accept_nonblocking, METH_O, accept_nonblocking_doc},
#endif
#ifdef HAVE_RECV_DATAGRAMS
    {"recv_datagrams", (PyCFunction)(void (*)(void))recv_datagrams,
     METH_FASTCALL, recv_datagrams_doc},
#endif
#ifdef HAVE_SEND_DATAGRAMS
    {"send_datagrams", (PyCFunction)(void (*)(void))send_datagrams,
     METH_FASTCALL, send_datagrams_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static int
accel_exec(PyObject *module)
{
    int b;

    for (b = 0; b < 256; b++) {
        ascii_upper[b] = (unsigned char)((b >= 'a' && b <= 'z') ? b - 32 : b);
        seq_len[b] = (unsigned char)(b < 0xC2 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3
                                     : b < 0xF5 ? 4 : 0);
        seq_lo[b] = (unsigned char)(b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80);
        seq_hi[b] = (unsigned char)(b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF);
    }
#if defined(__SSE2__)
    for (b = 0; b < 256; b++) {
        int bit, count = 0;
        for (bit = 0; bit < 8; bit++) {
            if (b & (1 << bit)) {
                bit_pos[b][count++] = (uint16_t)bit;
            }
        }
        bit_count[b] = (unsigned char)count;
    }
#endif
    for (b = 0; b < 2048; b++) {
        uint32_t entry = lookup((uint32_t)b);
        unsigned char pair[2];
        if (b < 0x80) {
            continue; /* overlong: never well-formed */
        }
        if (entry != 0 && (entry & 0xF) != 2) {
            continue; /* another length: the general path */
        }
        if (entry == 0) {
            pair[0] = (unsigned char)(0xC0 | (b >> 6));
            pair[1] = (unsigned char)(0x80 | (b & 0x3F));
        }
        else {
            pair[0] = UPPER_POOL[entry >> 4];
            pair[1] = UPPER_POOL[(entry >> 4) + 1];
        }
        memcpy(&two_byte[b], pair, 2);
    }
    if (PyModule_AddStringConstant(module, "UNIDATA_VERSION",
                                   UPPER_UNIDATA_VERSION) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "MAPPED", UPPER_MAPPED) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot accel_slots[] = {
    {Py_mod_exec, (void *)accel_exec},
    {0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT,
    "upperecho._accel",
    "The UTF-8 and ASCII paths of upperecho.transform, the accept of "
    "upperecho.port and the datagram reads and writes of upperecho.udp, "
    "in C.",
    0,
    accel_methods,
    accel_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    return PyModuleDef_Init(&accel_module);
}
