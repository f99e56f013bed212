"""Offline tools for the scorer: training, evaluation, benches, per-feature fitting and the embedding experiment.

Nothing in the runtime path (scorer, signals, decision, bundle, spend, signing, calibration, weights) imports
this package; it needs the `tooling` extra (numpy, scipy), which a proxy image does not install.
"""
