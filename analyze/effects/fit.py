"""Fit statsmodels formula models and turn each fit into a tidy coefficient table.

:func:`fit_model` wraps two estimators behind one call:

- ``"ols"``: ``smf.ols(formula).fit()`` with cluster-robust errors when ``groups`` is given
  (``cov_type="cluster"``, t inference with ``n_groups - 1`` degrees of freedom, statsmodels'
  small-sample correction), else HC3 heteroskedasticity-robust errors;
- ``"mixed"``: ``smf.mixedlm(formula, groups=data[groups]).fit()`` (REML, a random intercept
  per group, z inference), the paper's estimator.

Each fit becomes one row per fixed-effect term (:data:`COEFFICIENT_COLUMNS`): the numbers are
read straight from ``res.params``, ``res.bse``, ``res.conf_int()`` and ``res.pvalues`` (the
variance component ``Group Var`` is not a term; it goes to ``group_var`` as ``res.cov_re``).
``r2`` is OLS R², or for a mixed model the R² of its fixed-effect predictions (what the
paper's script printed). ``r2_marginal`` / ``r2_conditional`` are Nakagawa & Schielzeth's
(2013) for mixed models, see :func:`nakagawa_r2`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from extract.errors import UserError

ESTIMATORS = ("ols", "mixed")
# Columns with these names would hide patsy's C(), I() and Q() in formulas; they are renamed
# with a trailing underscore (the probe's regularisation ``C`` becomes ``C_``).
PATSY_NAMES = ("C", "I", "Q")
# Fewer clusters than this make both the random-intercept variance and cluster-robust errors
# meaningless (one cluster: no variance at all; two: one degree of freedom).
MIN_GROUPS = 3
COEFFICIENT_COLUMNS = [
    "model", "estimator", "response", "term", "coef", "se", "ci_low", "ci_high", "p_value",
    "n_obs", "n_groups", "groups", "errors", "r2", "r2_marginal", "r2_conditional", "group_var",
    "formula", "note",
]


@dataclass
class EffectFit:
    """One fitted model: the statsmodels result and its coefficient table."""

    name: str
    estimator: str
    formula: str
    groups: str | None
    result: object
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _unshadow(data: pd.DataFrame) -> pd.DataFrame:
    """Rename columns that hide patsy's functions (``C`` is also the probe's regularisation)."""
    clashes = {name: f"{name}_" for name in PATSY_NAMES if name in data.columns}
    return data.rename(columns=clashes) if clashes else data


def model_frame(formula: str, data: pd.DataFrame, *, groups: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``data`` a formula can use (every variable evaluable and finite) and their design.

    Raises a :class:`UserError` naming the problem when the formula refers to a column the
    table lacks or cannot be parsed, or when ``groups`` is not a column.

    Returns
    -------
    frame : DataFrame
        The usable rows of ``data``.
    design : ndarray of shape (len(frame), n_terms)
        The fixed-effect design matrix of those rows.
    """
    if groups is not None and groups not in data.columns:
        raise UserError(f"the grouping column {groups!r} is not in the table; pass one of "
                        f"{sorted(map(str, data.columns))} as `groups`.")
    try:
        response, design = patsy.dmatrices(formula, data, NA_action="drop", return_type="dataframe")
    except patsy.PatsyError as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"the formula {formula!r} cannot be evaluated on the table ({reason}); "
                        f"use only its columns: {sorted(map(str, data.columns))}.") from None
    keep = response.index.intersection(design.index)
    finite = (np.isfinite(response.loc[keep].to_numpy()).all(axis=1)
              & np.isfinite(design.loc[keep].to_numpy()).all(axis=1))
    keep = keep[finite]
    frame = data.loc[keep]
    if groups is not None:
        frame = frame[frame[groups].notna()]
    return frame, design.loc[frame.index].to_numpy(dtype=float)


def _check_design(design: np.ndarray, formula: str) -> None:
    if len(design) <= design.shape[1]:
        raise UserError(f"{formula!r} has {len(design)} usable rows for {design.shape[1]} coefficients; "
                        "add rows or drop terms.")
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise UserError(f"the design of {formula!r} is rank deficient (a term is constant or a combination "
                        "of others in these rows); drop that term or add rows where it varies.")


def _check_groups(frame: pd.DataFrame, groups: str, formula: str) -> int:
    n_groups = int(frame[groups].nunique())
    if n_groups < MIN_GROUPS:
        raise UserError(f"{formula!r} has {n_groups} group(s) of {groups!r} but needs at least {MIN_GROUPS} for "
                        "a mixed model or cluster-robust errors; add groups or fit OLS without `groups`.")
    return n_groups


def nakagawa_r2(result) -> tuple[float, float]:
    """Marginal and conditional R² of a fitted ``MixedLM`` (Nakagawa & Schielzeth 2013).

    ``var_f`` = variance (ddof=1, as in MuMIn) of the fixed-effect predictions ``X @ beta``;
    ``var_r`` = the mean over rows of ``z_i' Sigma z_i`` (Johnson 2014; for a random intercept
    simply its variance); ``var_e`` = the residual variance ``scale``.
    Marginal = ``var_f / (var_f + var_r + var_e)``; conditional = ``(var_f + var_r) / (same)``.
    """
    fixed = np.asarray(result.model.exog) @ np.asarray(result.fe_params)
    var_f = float(np.var(fixed, ddof=1))
    z = np.asarray(result.model.exog_re)
    sigma = np.asarray(result.cov_re)
    var_r = float(np.mean(np.einsum("ij,jk,ik->i", z, sigma, z)))
    total = var_f + var_r + float(result.scale)
    return var_f / total, (var_f + var_r) / total


def _fit_ols(formula: str, frame: pd.DataFrame, groups: str | None):
    model = smf.ols(formula, frame)
    if groups is None:
        return model.fit(cov_type="HC3"), "HC3 robust (t)"
    clusters = pd.factorize(frame[groups])[0]
    return model.fit(cov_type="cluster", cov_kwds={"groups": clusters}, use_t=True), f"cluster-robust by {groups} (t)"


def _mixed_attempt(formula: str, frame: pd.DataFrame, groups: str, method):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # recorded, not printed; convergence ones become notes
        try:
            model = smf.mixedlm(formula, frame, groups=frame[groups])
            result = model.fit() if method is None else model.fit(method=method)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise UserError(f"the mixed model {formula!r} could not be fitted ({exc}); simplify the formula or "
                            "fit OLS with `estimator='ols'`.") from None
    notes = sorted({str(w.message).splitlines()[0].rstrip(". ") for w in caught
                    if issubclass(w.category, ConvergenceWarning)})
    return result, notes


def _finite_errors(result) -> bool:
    with np.errstate(invalid="ignore"):  # a negative Hessian diagonal gives NaN, checked here
        return bool(np.isfinite(np.asarray(result.bse_fe)).all())


def _degenerate(result, notes: list[str]) -> bool:
    """A fit whose standard errors cannot be trusted: undefined, or from a singular Hessian."""
    return (not result.converged or not _finite_errors(result) or not np.isfinite(result.llf)
            or any("Hessian matrix" in note for note in notes))


def _better(retry, result) -> bool:
    """Whether the retry beats a degenerate first fit: finite errors and no worse likelihood."""
    if not _finite_errors(retry) or not np.isfinite(retry.llf):
        return False
    return not _finite_errors(result) or not np.isfinite(result.llf) or retry.llf >= result.llf - 1e-6


def _fit_mixed(formula: str, frame: pd.DataFrame, groups: str):
    """statsmodels' default fit (the paper's); Powell then L-BFGS when that one is degenerate.

    With the group variance at its boundary (0) the default gradient optimisers can stop where
    the random-effects covariance is exactly singular: the Hessian is not positive definite and
    the between-group coefficients collapse (seen: intercept and salience at 0 with SEs of 1e5).
    A derivative-free start (Powell) stays just inside the boundary and gives the estimates
    OLS gives there, with finite errors; its fit is used when it is not degenerate itself.
    """
    result, notes = _mixed_attempt(formula, frame, groups, None)
    if _degenerate(result, notes):
        retry, retry_notes = _mixed_attempt(formula, frame, groups, ["powell", "lbfgs"])
        if not _degenerate(retry, retry_notes) or _better(retry, result):
            result, notes = retry, ["refitted with Powell + L-BFGS because the default fit was degenerate",
                                    *retry_notes]
    if not result.converged:
        notes.append("the optimiser did not converge")
    if not _finite_errors(result):
        notes.append("some standard errors are undefined (a degenerate fit); do not read its p-values")
    return result, f"mixed, random intercept by {groups} (z)", notes


def fit_model(data: pd.DataFrame, formula: str, *, estimator: str = "ols", groups: str | None = None,
              name: str = "formula") -> EffectFit:
    """Fit ``formula`` on ``data`` and return the fit with its coefficient table.

    Parameters
    ----------
    data : DataFrame
        One row per observation; rows with a missing or non-finite value in any variable the
        formula uses (or in ``groups``) are left out.
    formula : str
        A statsmodels/patsy formula, e.g. ``"Value ~ Saliency + Skew"``. A column named ``C``,
        ``I`` or ``Q`` is available as ``C_``, ``I_``, ``Q_`` (:data:`PATSY_NAMES`).
    estimator : {"ols", "mixed"}
        See the module docstring.
    groups : str, optional
        Column of clusters (OLS) or random-intercept groups (required for ``"mixed"``).
    name : str
        The model's name in the ``model`` column.

    Returns
    -------
    EffectFit
        ``table`` has one row per fixed-effect term and the columns :data:`COEFFICIENT_COLUMNS`.
    """
    if estimator not in ESTIMATORS:
        raise UserError(f"estimator {estimator!r} is unknown; use one of {list(ESTIMATORS)}.")
    if estimator == "mixed" and groups is None:
        raise UserError("a mixed model needs a grouping column; pass its name as `groups`.")
    frame, design = model_frame(formula, _unshadow(data), groups=groups)
    if len(frame) == 0:
        raise UserError(f"no row of the table has every variable of {formula!r}; check the columns' values.")
    _check_design(design, formula)
    n_groups = _check_groups(frame, groups, formula) if groups is not None else np.nan
    notes: list[str] = []
    if estimator == "ols":
        result, errors = _fit_ols(formula, frame, groups)
    else:
        result, errors, notes = _fit_mixed(formula, frame, groups)
    table = coefficient_rows(result, estimator=estimator, name=name, formula=formula, groups=groups,
                             n_groups=n_groups, errors=errors, notes=notes)
    return EffectFit(name=name, estimator=estimator, formula=formula, groups=groups, result=result,
                     table=table, notes=notes)


def coefficient_rows(result, *, estimator: str, name: str, formula: str, groups: str | None,
                     n_groups: float, errors: str, notes: list[str]) -> pd.DataFrame:
    """One row per fixed-effect term, read from the statsmodels result (see module docstring)."""
    if estimator == "mixed":
        terms = list(result.fe_params.index)
        r2_marginal, r2_conditional = nakagawa_r2(result)
        fixed = np.asarray(result.model.exog) @ np.asarray(result.fe_params)
        endog = np.asarray(result.model.endog)
        r2 = 1.0 - float(np.sum((endog - fixed) ** 2) / np.sum((endog - endog.mean()) ** 2))
        group_var = float(np.asarray(result.cov_re)[0, 0])
    else:
        terms = list(result.params.index)
        r2, r2_marginal, r2_conditional, group_var = float(result.rsquared), np.nan, np.nan, np.nan
    interval = result.conf_int(alpha=0.05)
    return pd.DataFrame({
        "model": name, "estimator": estimator, "response": formula.split("~")[0].strip(), "term": terms,
        "coef": result.params[terms].to_numpy(dtype=float), "se": result.bse[terms].to_numpy(dtype=float),
        "ci_low": interval.loc[terms, 0].to_numpy(dtype=float), "ci_high": interval.loc[terms, 1].to_numpy(dtype=float),
        "p_value": result.pvalues[terms].to_numpy(dtype=float), "n_obs": int(result.nobs), "n_groups": n_groups,
        "groups": groups or "", "errors": errors, "r2": r2, "r2_marginal": r2_marginal,
        "r2_conditional": r2_conditional, "group_var": group_var, "formula": formula, "note": "; ".join(notes),
    }, columns=COEFFICIENT_COLUMNS)


def coefficient_table(fits: list[EffectFit]) -> pd.DataFrame:
    """All fits' coefficient rows stacked (columns :data:`COEFFICIENT_COLUMNS`)."""
    return pd.concat([fit.table for fit in fits], ignore_index=True)
