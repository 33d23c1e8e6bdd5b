/* keys._sin_scan: the SIN scanner's judge, compiled, with the GIL released.
 *
 * scan(tail, chunk, lo, final) -> bool: whether the stream bytes ``tail + chunk``
 * (``tail`` at most 15 bytes kept from earlier chunks; index 0 has no left
 * neighbour, as at the start of a stream) hold a SIN among the candidates
 * starting at ``lo`` or later. Without ``final``, a candidate whose right
 * context (2 bytes after its last digit) has not arrived is left for a later
 * call, exactly as keys._sin_pure does; with ``final`` the stream ends after
 * ``chunk``. The rules are keys/sin.py's docstring; keys._sin_pure is the
 * reference this must equal (tests/unit/keys/test_sin.py, differential).
 *
 * How it is fast: a candidate starts at a digit 1-7 or 9 whose left neighbour
 * is not an ASCII letter or digit. That test is done 16 bytes at a time with
 * SSE2 (every x86-64 has it; a plain loop elsewhere), and only the rare spots
 * that pass it get the full check. The chunk is read in place, not copied; the
 * GIL is released while a large chunk is scanned, so other threads (the
 * service's event loop) run meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_TAIL 15
#define SEAM 32             /* bytes of the chunk copied next to the tail: 2 + 11 + 2 < SEAM */
#define GIL_FREE_BYTES 65536 /* smaller scans keep the GIL: re-taking it can wait a switch interval */

enum { NO = 0, YES = 1, LATER = 2 };

static inline int is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
static inline int is_alnum(uint8_t b) { return is_digit(b) || ((uint8_t)((b | 0x20) - 'a') < 26); }
static inline int is_first(uint8_t b) { return (b >= '1' && b <= '7') || b == '9'; }

static int luhn9(const uint8_t *d) {
  static const int twice[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};
  int sum = 0;
  for (int i = 0; i < 9; i++) /* from the left: the 2nd, 4th, 6th and 8th digits are doubled */
    sum += (i & 1) ? twice[d[i] - '0'] : d[i] - '0';
  return sum % 10 == 0;
}

/* The candidate starting at b[s] (b[s-1], when s > 0, is not a letter or digit
 * and b[s] is a first digit): YES, NO, or LATER (its bytes are not all here). */
static int judge(const uint8_t *b, size_t n, size_t s, int final) {
  uint8_t d[9], sep = 0;
  size_t e;
  if (s + 9 > n) return final ? NO : LATER;
  if (!is_digit(b[s + 1]) || !is_digit(b[s + 2])) return NO;
  if (is_digit(b[s + 3])) {
    for (size_t i = 0; i < 9; i++) {
      if (!is_digit(b[s + i])) return NO;
      d[i] = b[s + i];
    }
    e = s + 9;
  } else if (b[s + 3] == ' ' || b[s + 3] == '-') {
    sep = b[s + 3];
    if (s + 11 > n) return final ? NO : LATER;
    if (b[s + 7] != sep) return NO;
    static const int at[9] = {0, 1, 2, 4, 5, 6, 8, 9, 10};
    for (size_t i = 0; i < 9; i++) {
      if (!is_digit(b[s + at[i]])) return NO;
      d[i] = b[s + at[i]];
    }
    e = s + 11;
  } else {
    return NO;
  }
  if (!final && e + 2 > n) return LATER;
  if (e < n && is_alnum(b[e])) return NO;
  if (sep) { /* part of a longer grouped number: "1 130 692 544", "130-692-544-1" */
    if (s >= 2 && b[s - 1] == sep && is_digit(b[s - 2])) return NO;
    if (e + 2 <= n && b[e] == sep && is_digit(b[e + 1])) return NO;
  }
  return luhn9(d) ? YES : NO;
}

/* Any SIN among candidates starting in [from, c) of ``p``, where the stream
 * seen so far ends at ``c`` (from >= 2: both left neighbours are in ``p``). */
static int scan_chunk(const uint8_t *p, size_t c, size_t from, int final) {
  size_t j = from;
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (; j + 16 <= c; j += 16) {
    __m128i cur = _mm_loadu_si128((const __m128i *)(p + j));
    __m128i prev = _mm_loadu_si128((const __m128i *)(p + j - 1));
    /* x in [lo, lo + span] as (x - lo) saturating-minus span == 0 */
#define IN(x, lo, span) _mm_cmpeq_epi8(_mm_subs_epu8(_mm_sub_epi8((x), _mm_set1_epi8(lo)), _mm_set1_epi8(span)), zero)
    __m128i first = _mm_or_si128(IN(cur, '1', 6), _mm_cmpeq_epi8(cur, _mm_set1_epi8('9')));
    __m128i alnum = _mm_or_si128(IN(prev, '0', 9), IN(_mm_or_si128(prev, _mm_set1_epi8(0x20)), 'a', 25));
#undef IN
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(alnum, first));
    while (m) {
      size_t s = j + (size_t)__builtin_ctz(m);
      if (judge(p, c, s, final) == YES) return 1;
      m &= m - 1;
    }
  }
#endif
  for (; j < c; j++)
    if (is_first(p[j]) && !is_alnum(p[j - 1]) && judge(p, c, j, final) == YES) return 1;
  return 0;
}

static PyObject *scan(PyObject *self, PyObject *args) {
  Py_buffer tail, chunk;
  Py_ssize_t lo;
  int final, found = 0;
  if (!PyArg_ParseTuple(args, "y*y*np", &tail, &chunk, &lo, &final)) return NULL;
  const uint8_t *t = tail.buf, *p = chunk.buf;
  size_t tn = (size_t)tail.len, c = (size_t)chunk.len;
  if (tn > MAX_TAIL || lo < 0) {
    PyBuffer_Release(&tail);
    PyBuffer_Release(&chunk);
    PyErr_SetString(PyExc_ValueError, "tail over 15 bytes or negative start");
    return NULL;
  }
  /* The seam: starts before tn + 2 (in the tail, or whose left neighbours are),
   * judged in a small copy of the tail and the first bytes of the chunk. */
  uint8_t seam[MAX_TAIL + SEAM];
  size_t head = c < SEAM ? c : SEAM, m = tn + head;
  memcpy(seam, t, tn);
  memcpy(seam + tn, p, head);
  int seam_final = final && head == c; /* else the seam holds every byte its starts need */
  for (size_t s = (size_t)lo; s < m && s < tn + 2; s++) {
    if (is_first(seam[s]) && (s == 0 || !is_alnum(seam[s - 1])) && judge(seam, m, s, seam_final) == YES) {
      found = 1;
      break;
    }
  }
  /* The rest, in place in the chunk. */
  size_t from = (size_t)lo > tn + 2 ? (size_t)lo - tn : 2;
  if (!found && from < c) {
    if (c - from >= GIL_FREE_BYTES) {
      Py_BEGIN_ALLOW_THREADS found = scan_chunk(p, c, from, final);
      Py_END_ALLOW_THREADS
    } else {
      found = scan_chunk(p, c, from, final);
    }
  }
  PyBuffer_Release(&tail);
  PyBuffer_Release(&chunk);
  return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
  {"scan", scan, METH_VARARGS,
   "scan(tail, chunk, lo, final) -> bool: a SIN among the candidates starting at lo or later in tail + chunk."},
  {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "keys._sin_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sin_scan(void) { return PyModule_Create(&module); }
