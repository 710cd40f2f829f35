/*
 * bayescomb.c - the classifier's arithmetic: Robinson's f(w), the
 * chi-square combining of the strongest tokens (bayes.c reads the
 * counts and calls these).
 */
#include "rules/rules-private.h"

#include <stdint.h>

/* ln and exp of our own: the programs are linked without libm (-lm is
 * not among the Makefile's libraries), and two functions on the
 * classifier's ranges do not justify a new link dependency for every
 * program.  Both are accurate to about 1e-15 relative. */
#define LN2 0.693147180559945309417232121458

/* ln(x) for x > 0 (normal doubles): x = m * 2^e with m in [sqrt(1/2),
 * sqrt(2)), ln(m) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 ...) for
 * z = (m - 1) / (m + 1), |z| < 0.172. */
static double ln(double x)
{
	if (!(x > 0))
		return -1e308; /* not reached: f(w) is within (0, 1) */
	union {
		double d;
		uint64_t u;
	} v = { .d = x };
	int e = (int)((v.u >> 52) & 0x7ff) - 1023;
	v.u = (v.u & ~(0x7ffULL << 52)) | (1023ULL << 52); /* m in [1, 2) */
	double m = v.d;
	if (m > 1.41421356237309504880) {
		m /= 2;
		e++;
	}
	double z = (m - 1) / (m + 1), z2 = z * z, term = z, sum = 0;
	for (int k = 1; k < 40; k += 2) {
		sum += term / k;
		term *= z2;
	}
	return 2 * sum + e * LN2;
}

/* e^x for x <= 0 (chi2q's e^-m): e^x = 2^k e^r, |r| <= ln2 / 2, e^r by
 * its Taylor series; below the normal range 0. */
static double expneg(double x)
{
	if (x < -708)
		return 0;
	if (x > 0)
		x = 0;
	int k = (int)(x / LN2 - 0.5); /* round to nearest (x <= 0) */
	double r = x - k * LN2, term = 1, sum = 1;
	for (int i = 1; i < 25; i++) {
		term *= r / i;
		sum += term;
	}
	union {
		double d;
		uint64_t u;
	} v = { .u = (uint64_t)(k + 1023) << 52 };
	return sum * v.d;
}

double bayes_chi2q(double x2, unsigned v)
{
	/* For even v the series is exact: e^-m * sum_{i < v/2} m^i / i!. */
	double m = x2 / 2.0, term = expneg(-m), sum = term;
	for (unsigned i = 1; i < v / 2; i++) {
		term *= m / i;
		sum += term;
	}
	return sum < 1.0 ? sum : 1.0;
}

double bayes_robinson(uint64_t s, uint64_t h, uint64_t nspam, uint64_t nham)
{
	/* p(w) from the frequencies in each class, so that a database with
	 * more ham than spam does not make every word look hammy. */
	double rs = (double)s / (double)nspam, rh = (double)h / (double)nham;
	double p = rs + rh > 0 ? rs / (rs + rh) : 0.5;
	double n = (double)(s + h);
	return (BAYES_FW_S * BAYES_FW_X + n * p) / (BAYES_FW_S + n);
}

double bayes_combine(const double *f, size_t n)
{
	if (n == 0)
		return 0.5;
	/* Logarithms: 150 products of small probabilities underflow. */
	double ln_f = 0, ln_1f = 0;
	for (size_t i = 0; i < n; i++) {
		ln_f += ln(f[i]);
		ln_1f += ln(1.0 - f[i]);
	}
	double h = bayes_chi2q(-2.0 * ln_f, (unsigned)(2 * n));
	double s = bayes_chi2q(-2.0 * ln_1f, (unsigned)(2 * n));
	return (1.0 + h - s) / 2.0;
}

double bayes_strength(double f)
{
	return f > 0.5 ? f - 0.5 : 0.5 - f;
}

static void swap(double *v, size_t a, size_t b)
{
	double t = v[a];
	v[a] = v[b];
	v[b] = t;
}

/* Reorder v so that its first k are the k strongest (quickselect with a
 * three-way partition: many tokens share the same counts, hence the same
 * f(w)).  The combining is a product: they need no order among
 * themselves. */
void bayes_strongest(double *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		double pivot = bayes_strength(v[lo + (hi - lo) / 2]);
		/* [lo, lt) stronger, [lt, i) as strong, [gt, hi) weaker */
		size_t lt = lo, i = lo, gt = hi;
		while (i < gt) {
			double s = bayes_strength(v[i]);
			if (s > pivot)
				swap(v, lt++, i++);
			else if (s < pivot)
				swap(v, i, --gt);
			else
				i++;
		}
		if (k < lt)
			hi = lt;
		else if (k > gt)
			lo = gt;
		else
			return;
	}
}
