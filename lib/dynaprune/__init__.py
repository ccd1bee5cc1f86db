"""dynaprune: dynamic data pruning and online importance sampling (analysis library of the workbook).

Modules: data, models, theory, scores, variance, samplers, train, cache, mixture, study.
"""
__version__ = "0.1.0"
