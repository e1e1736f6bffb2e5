"""Reference values for missive's experiment statistics, from scipy and statsmodels.

Reads the cases (JSON) named by argv[1], prints the same structure of results (JSON)."""
import json
import sys

import numpy as np
from scipy import integrate, optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportion_confint,
    proportions_ztest,
)

cases = json.load(open(sys.argv[1]))
ALPHA = cases["alpha"]


def beta_posterior(x, n):
    return 1.0 + x, 1.0 + n - x


def chance_and_loss(xa, na, xb, nb):
    aa, ba = beta_posterior(xa, na)
    ab, bb = beta_posterior(xb, nb)
    fa, fb = stats.beta(aa, ba), stats.beta(ab, bb)
    lo = min(fa.ppf(1e-15), fb.ppf(1e-15))
    hi = max(fa.isf(1e-15), fb.isf(1e-15))
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=500)
    chance = integrate.quad(lambda p: fb.pdf(p) * fa.cdf(p), lo, hi, **opts)[0]
    # E[max(X - Y, 0)] = integral of f_X(x) (x F_Y(x) - E[Y] F_{Beta(a_Y + 1, b_Y)}(x)).
    def shortfall(fx, ay, by):
        fy, fy1 = stats.beta(ay, by), stats.beta(ay + 1, by)
        my = ay / (ay + by)
        return integrate.quad(lambda x: fx.pdf(x) * (x * fy.cdf(x) - my * fy1.cdf(x)), lo, hi, **opts)[0]
    return chance, shortfall(fa, ab, bb), shortfall(fb, aa, ba)


def attempt(f):
    """f(), or None where the statistic is undefined (a division by zero)."""
    try:
        return f()
    except ZeroDivisionError:
        return None


def clean(v):
    """Undefined values (NaN, infinities) as null: JSON has no NaN."""
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


out = {"pairs": [], "groups": [], "means": [], "holm": [], "srm": [], "sizes": [], "detectable": []}
for xa, na, xb, nb in cases["pairs"]:
    table = [[xa, na - xa], [xb, nb - xb]]
    z, pz = proportions_ztest([xb, xa], [nb, na])
    chi = stats.chi2_contingency(table, correction=False)
    yates = stats.chi2_contingency(table, correction=True)
    fisher = stats.fisher_exact(table)[1]
    wilson = proportion_confint(xa, na, alpha=ALPHA, method="wilson")
    newcombe = confint_proportions_2indep(xb, nb, xa, na, method="newcomb", compare="diff", alpha=ALPHA)
    ratio = attempt(lambda: list(confint_proportions_2indep(xb, nb, xa, na, method="log", compare="ratio", alpha=ALPHA)))
    chance, loss_b, loss_a = chance_and_loss(xa, na, xb, nb)
    out["pairs"].append({
        "z": [z, pz],
        "chi": [chi[0], chi[1]],
        "yates": [yates[0], yates[1]],
        "fisher": fisher,
        "wilson_a": list(wilson),
        "newcombe": list(newcombe),
        "ratio": ratio,
        "bayes": [chance, loss_b, loss_a],
    })
for groups in cases["groups"]:
    table = [[x, n - x] for x, n in groups]
    r = stats.chi2_contingency(table, correction=False)
    out["groups"].append([r[0], r[1]])
for a, b in cases["means"]:
    w = stats.ttest_ind(b, a, equal_var=False)
    mw = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    ci = w.confidence_interval(1 - ALPHA)
    out["means"].append({
        "welch": [w.statistic, w.pvalue, w.df],
        "welch_interval": [ci.low, ci.high],
        "mann_whitney": [mw.statistic, mw.pvalue],
        "skew": [stats.skew(a), stats.skew(b)],
    })
for ps in cases["holm"]:
    out["holm"].append(list(multipletests(ps, method="holm")[1]))
for units, weights in cases["srm"]:
    w = np.array(weights) / sum(weights) * sum(units)
    r = stats.chisquare(units, f_exp=w)
    out["srm"].append([r[0], r[1]])
power = NormalIndPower()
for p1, p2, alpha, target in cases["sizes"]:
    h = proportion_effectsize(p2, p1)
    n = power.solve_power(effect_size=h, nobs1=None, alpha=alpha, power=target, ratio=1.0, alternative="two-sided")
    out["sizes"].append(float(np.squeeze(n)))
for p1, n, alpha, target in cases["detectable"]:
    # solve_power's own root for the effect stops at about 1e-4 of power: solve statsmodels'
    # power function with a tight tolerance instead.
    def gap(h):
        return power.power(effect_size=h, nobs1=n, alpha=alpha, ratio=1.0, alternative="two-sided") - target
    h = optimize.brentq(gap, 1e-9, 4.0, xtol=1e-15, rtol=1e-15)
    out["detectable"].append(float(h))
print(json.dumps(clean(out)))
