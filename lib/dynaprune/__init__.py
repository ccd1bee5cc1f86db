"""dynaprune: dynamic data pruning and online importance sampling (analysis library of the workbook).

Modules: data, models, theory, scores, static_scores, variance, samplers, config, train, cache, mixture,
stats, claims, report, profiles, grids, study, book, bench.
"""
__version__ = "0.1.0"
